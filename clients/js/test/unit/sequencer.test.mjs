import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RoomcastError, Sequencer } from '../../dist/index.js';
import { ROOM, ScriptedHistory, payload, range, seqs, tick } from './history.mjs';

function setup(history, opts = {}) {
  const got = [];
  const errors = [];
  const seq = new Sequencer({
    roomId: ROOM,
    api: history,
    deliver: (e) => got.push(e),
    onError: (e) => errors.push(e),
    retryMinMs: 1,
    retryMaxMs: 5,
    ...opts,
  });
  const live = (s, extra) => {
    const p = payload(s, extra);
    seq.live(p.event, p.data);
  };
  return { seq, got, errors, live };
}

test('live events in order are handed over as they come, without history calls', async () => {
  const h = new ScriptedHistory(3);
  const { seq, got, live } = setup(h);
  live(1);
  live(2);
  live(3);
  await seq.idle();
  assert.deepEqual(seqs(got), [1, 2, 3]);
  assert.deepEqual(h.calls, []);
  assert.equal(got[0].event, 'new-message');
  assert.equal(got[0].roomId, ROOM);
  assert.equal(got[0].data.content, 'text 1');
  assert.equal(seq.lastSeq, 3);
});

test('a seq seen again is dropped, live or from history', async () => {
  const h = new ScriptedHistory(4);
  const { seq, got, live } = setup(h);
  live(1);
  live(1);
  live(2);
  await seq.idle();
  await seq.catchUp(); // history repeats nothing already handed over
  live(2);
  live(4);
  live(3);
  await seq.idle();
  assert.deepEqual(seqs(got), [1, 2, 3, 4]);
});

test('a seq jump is filled from history before the later event', async () => {
  const h = new ScriptedHistory(4);
  const { seq, got, live, errors } = setup(h);
  live(1);
  live(4); // 2 and 3 were lost
  await seq.idle();
  assert.deepEqual(seqs(got), [1, 2, 3, 4]);
  assert.deepEqual(h.calls, [['events', ROOM, 1, 100]]);
  h.add(payload(5));
  h.add(payload(6));
  live(5);
  live(6);
  await seq.idle();
  assert.deepEqual(seqs(got), range(1, 6));
  assert.deepEqual(errors, []);
});

test('history is paged until it says no more follow', async () => {
  const h = new ScriptedHistory(7);
  const { seq, got } = setup(h, { pageSize: 2 });
  await seq.catchUp();
  assert.deepEqual(seqs(got), range(1, 7));
  assert.deepEqual(
    h.calls.map((c) => c[2]),
    [0, 2, 4, 6],
  );
});

test('afterSeq skips what the app has; latest starts at the room\'s last seq', async () => {
  const h = new ScriptedHistory(5);
  const a = setup(h, { afterSeq: 3 });
  await a.seq.catchUp();
  assert.deepEqual(seqs(a.got), [4, 5]);

  const b = setup(h, { afterSeq: 'latest' });
  b.live(5); // arrives before the baseline is known: at or below it, dropped
  await b.seq.catchUp();
  assert.deepEqual(seqs(b.got), []);
  assert.equal(b.seq.lastSeq, 5);
  h.add(payload(6));
  h.add(payload(7));
  b.live(7);
  await b.seq.idle();
  assert.deepEqual(seqs(b.got), [6, 7]);
  assert.throws(() => setup(h, { afterSeq: -1 }), TypeError);
});

test('a catch-up after a reconnect fetches what was missed, each seq once', async () => {
  const h = new ScriptedHistory(10);
  const { seq, got, live } = setup(h);
  for (const s of [1, 2, 3]) live(s);
  await seq.idle();
  // disconnected: 4..8 never arrive; 9 and 10 arrive while the catch-up runs
  const done = seq.catchUp();
  live(9);
  live(10);
  await done;
  await seq.idle();
  assert.deepEqual(seqs(got), range(1, 10));
});

test('failed history calls are reported and retried until the gap is filled', async () => {
  const h = new ScriptedHistory(5);
  const boom = new RoomcastError('history', 'GET /rooms/room-1/events: 503 unavailable', { status: 503 });
  h.fail.push(boom, new TypeError('fetch failed'));
  const { seq, got, errors, live } = setup(h);
  live(1);
  live(5);
  await seq.idle();
  assert.deepEqual(seqs(got), range(1, 5));
  assert.equal(errors.length, 2);
  assert.equal(errors[0], boom);
  assert.equal(errors[1].kind, 'history');
  assert.equal(errors[1].fatal, false);
});

test('a 403 from history stops the attempt instead of retrying', async () => {
  const h = new ScriptedHistory(5);
  h.fail.push(new RoomcastError('history', 'not a member', { status: 403, fatal: true }));
  const { seq, got, errors } = setup(h);
  await seq.catchUp();
  assert.deepEqual(seqs(got), []);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].status, 403);
  assert.equal(h.calls.length, 1);
  await seq.catchUp(); // a later trigger tries again
  assert.deepEqual(seqs(got), range(1, 5));
});

test('live events ahead of a lagging history wait until history holds the gap', async () => {
  const h = new ScriptedHistory(4);
  h.visible = 1;
  const { seq, got, live } = setup(h);
  live(1);
  live(4);
  while (h.calls.length < 3) await tick();
  assert.deepEqual(seqs(got), [1]);
  h.visible = Infinity;
  await seq.idle();
  assert.deepEqual(seqs(got), range(1, 4));
});

test('a truncated message is handed over with its full text', async () => {
  const h = new ScriptedHistory(0);
  const long = 'x'.repeat(5000);
  h.full.set('m-1', long);
  h.add(payload(1, { content: 'x'.repeat(10), truncated: true }));
  const { seq, got, errors, live } = setup(h);
  live(1, { content: 'x'.repeat(10), truncated: true });
  await seq.idle();
  assert.equal(got.length, 1);
  assert.equal(got[0].data.content, long);
  assert.equal('truncated' in got[0].data, false);
  assert.deepEqual(h.calls, [['message', ROOM, 'm-1']]);
  assert.deepEqual(errors, []);
});

test('a truncated message whose text cannot be fetched is handed over truncated, with an error', async () => {
  const h = new ScriptedHistory(0);
  const { seq, got, errors, live } = setup(h);
  live(1, { content: 'abc', truncated: true });
  live(2);
  await seq.idle();
  assert.deepEqual(seqs(got), [1, 2]);
  assert.equal(got[0].data.truncated, true);
  assert.equal(got[0].data.content, 'abc');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'message');
  assert.equal(errors[0].status, 404);
});

test('a throwing handler is reported and does not stop the room', async () => {
  const h = new ScriptedHistory(3);
  const got = [];
  const errors = [];
  const seq = new Sequencer({
    roomId: ROOM,
    api: h,
    deliver: (e) => {
      got.push(e);
      if (e.seq === 2) throw new Error('app bug');
    },
    onError: (e) => errors.push(e),
  });
  await seq.catchUp();
  assert.deepEqual(seqs(got), [1, 2, 3]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'handler');
});

test('nothing is handed over after close', async () => {
  const h = new ScriptedHistory(3);
  const { seq, got, live } = setup(h);
  live(1);
  seq.close();
  live(2);
  await seq.catchUp();
  await seq.idle();
  assert.ok(got.length <= 1);
  assert.equal(h.calls.length, 0);
});

test('whatever is lost, repeated or reordered, the room ends with every seq once, in order', async () => {
  // A deterministic pseudo-random schedule: 300 events delivered with drops,
  // duplicates, reorderings, history failures and catch-ups interleaved.
  let state = 7;
  const rnd = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 20; round++) {
    const n = 300;
    const h = new ScriptedHistory(0);
    const { seq, got } = setup(h, { pageSize: 1 + Math.floor(rnd() * 50) });
    const inflight = [];
    for (let s = 1; s <= n; s++) {
      h.add(payload(s));
      if (rnd() < 0.2) continue; // lost
      inflight.push(s);
      if (rnd() < 0.1) inflight.push(s); // duplicated
      while (inflight.length > 0 && rnd() < 0.6) {
        const i = Math.floor(rnd() * Math.min(inflight.length, 4)); // reordered a little
        const [x] = inflight.splice(i, 1);
        const p = payload(x);
        seq.live(p.event, p.data);
      }
      if (rnd() < 0.05) h.fail.push(new TypeError('fetch failed'));
      if (rnd() < 0.03) void seq.catchUp();
      if (rnd() < 0.3) await tick();
    }
    for (const x of inflight) {
      const p = payload(x);
      seq.live(p.event, p.data);
    }
    await seq.catchUp(); // as after a reconnect: the lost tail comes from history
    await seq.idle();
    assert.deepEqual(seqs(got), range(1, n), `round ${round}`);
  }
});
