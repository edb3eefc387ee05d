import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { Api, RoomcastError } from '../../dist/index.js';

// A real HTTP server that records what the client sends and answers as
// roomcast's API would.
let server;
let base;
const seen = [];

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, type: req.headers['content-type'], body });
      const url = new URL(req.url, 'http://x');
      const json = (status, v) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (req.headers.authorization !== 'Bearer tok-ada') return json(401, { error: 'no identity' });
      if (url.pathname === '/api/pusher/auth') return json(200, { auth: 'key:sig' });
      if (url.pathname === '/api/rooms/room%2F1/events') {
        return json(200, { roomId: 'room/1', lastSeq: 3, more: false, events: [{ seq: 3, event: 'user-left', data: { userId: 'u', leftAt: 't', roomId: 'room/1', seq: 3 } }] });
      }
      if (url.pathname === '/api/rooms/r/events') return json(403, { error: 'not a member of room r' });
      if (url.pathname === '/api/rooms/r/messages/m-1') return json(200, { id: 'm-1', roomId: 'r', content: 'full', deleted: false });
      if (url.pathname === '/api/rooms/bad/events') return json(200, { hello: 1 });
      json(404, { error: 'no route' });
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}/api/`;
});

after(() => server.close());

test('every call carries the bearer token the getter gives, fetched anew each time', async () => {
  let n = 0;
  const api = new Api(base, async () => (n++ === 0 ? 'tok-ada' : 'tok-other'));
  await api.events('room/1', 2, 50);
  await assert.rejects(api.events('room/1', 2, 50), (e) => e instanceof RoomcastError && e.status === 401 && e.message.includes('no identity'));
  assert.equal(n, 2);
});

test('the events call asks after_seq and limit with the room id escaped', async () => {
  const api = new Api(base, () => 'tok-ada');
  const page = await api.events('room/1', 2, 50);
  assert.equal(seen.at(-1).url, '/api/rooms/room%2F1/events?after_seq=2&limit=50');
  assert.equal(seen.at(-1).method, 'GET');
  assert.equal(page.lastSeq, 3);
  assert.equal(page.events[0].data.userId, 'u');
});

test('channel authorization posts the form body pusher-js would', async () => {
  const api = new Api(base, () => 'tok-ada');
  const auth = await api.authorizeChannel('123.456', 'presence-room-7');
  assert.deepEqual(auth, { auth: 'key:sig' });
  const last = seen.at(-1);
  assert.equal(last.method, 'POST');
  assert.equal(last.type, 'application/x-www-form-urlencoded');
  assert.equal(last.body, 'socket_id=123.456&channel_name=presence-room-7');
  assert.equal(last.auth, 'Bearer tok-ada');
});

test('a 403 is a fatal error with the API\'s reason', async () => {
  const api = new Api(base, () => 'tok-ada');
  await assert.rejects(api.events('r', 0, 10), (e) => e.kind === 'history' && e.status === 403 && e.fatal && e.message.includes('not a member of room r'));
  const m = await api.message('r', 'm-1');
  assert.equal(m.content, 'full');
});

test('an answer that is not an events page is an error, not an empty room', async () => {
  const api = new Api(base, () => 'tok-ada');
  await assert.rejects(api.events('bad', 0, 10), (e) => e.kind === 'history' && !e.fatal);
});

test('an unreachable API is a retryable error', async () => {
  const api = new Api('http://127.0.0.1:1', () => 'tok-ada');
  await assert.rejects(api.events('r', 0, 10), (e) => e instanceof RoomcastError && e.status === undefined && !e.fatal);
});
