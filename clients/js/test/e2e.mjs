// The browser side of roomcast's end-to-end test (clients/js/e2e): users
// with the BUILT client library (imported by its package name, as an app
// would) over pusher-js to soketi, authorized by roomcast's API. The Go test
// drives it with JSON commands on stdin and asserts on the JSON lines it
// prints on stdout.
//
// Environment: API_BASE, PUSHER_KEY, SOKETI_PORT, TOKENS (JSON: user -> token).
//
// Commands (one JSON object a line):
//   {"cmd":"join","user":"alice","room":"r1","presence":true,"afterSeq":0}
//   {"cmd":"notifications","user":"alice","userId":"bob"}
//   {"cmd":"wait","user":"alice","room":"r1","seq":12}  -> a "reached" line once lastSeq >= 12
//   {"cmd":"quit"}
// Lines: state, subscribed, event, members, error, reached, notification.
import { createInterface } from 'node:readline';

import { RoomcastClient } from '@roomcast/client';

const out = (v) => process.stdout.write(JSON.stringify(v) + '\n');
const tokens = JSON.parse(process.env.TOKENS);
const clients = new Map(); // user -> RoomcastClient
const rooms = new Map(); // `${user}/${room}` -> Room
const waits = []; // {user, room, seq}

function client(user) {
  let c = clients.get(user);
  if (!c) {
    c = new RoomcastClient({
      apiBase: process.env.API_BASE,
      key: process.env.PUSHER_KEY,
      token: async () => tokens[user],
      pusher: {
        cluster: 'local', // pusher-js wants one; wsHost decides where it connects
        wsHost: '127.0.0.1',
        wsPort: Number(process.env.SOKETI_PORT),
        forceTLS: false,
        enabledTransports: ['ws'],
      },
      pageSize: 4, // several pages per gap
      retryMinMs: 100,
      retryMaxMs: 1000,
    });
    c.pusher.connection.bind('state_change', ({ current }) => out({ type: 'state', user, state: current }));
    clients.set(user, c);
  }
  return c;
}

function errorLine(user, room, e) {
  return { type: 'error', user, room, kind: e.kind, status: e.status ?? null, fatal: e.fatal, message: e.message };
}

function checkWaits() {
  for (let i = waits.length - 1; i >= 0; i--) {
    const w = waits[i];
    const room = rooms.get(`${w.user}/${w.room}`);
    if (room && room.lastSeq >= w.seq) {
      waits.splice(i, 1);
      out({ type: 'reached', user: w.user, room: w.room, seq: room.lastSeq });
    }
  }
}

function join({ user, room, presence = false, afterSeq = 0 }) {
  const r = client(user).joinRoom(
    room,
    {
      onEvent: (e) => {
        out({ type: 'event', user, room, seq: e.seq, event: e.event, data: e.data });
        queueMicrotask(checkWaits);
      },
      onMembers: (members) => out({ type: 'members', user, room, members }),
      onError: (e) => out(errorLine(user, room, e)),
      onSubscribed: () => out({ type: 'subscribed', user, room }),
      onNotification: (n) => out({ type: 'notification', user, room, notification: n }),
    },
    { presence, afterSeq },
  );
  rooms.set(`${user}/${room}`, r);
}

const commands = {
  join,
  notifications: ({ user, userId }) =>
    client(user).notifications(
      userId,
      (n) => out({ type: 'notification', user, userId, notification: n }),
      (e) => out(errorLine(user, null, e)),
    ),
  wait: (w) => {
    waits.push(w);
    checkWaits();
  },
  quit: () => {
    for (const c of clients.values()) c.disconnect();
    process.exit(0);
  },
};

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  try {
    const cmd = JSON.parse(line);
    commands[cmd.cmd](cmd);
  } catch (e) {
    out({ type: 'bad-command', line, error: String(e) });
  }
});
lines.on('close', () => commands.quit());
out({ type: 'started' });
