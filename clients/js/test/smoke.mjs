// The smoke test's browser side (internal/soketi): plain pusher-js, no
// roomcast library. Connects to soketi, subscribes to the channels named in
// CHANNELS (private ones authorized at AUTH_ENDPOINT) and prints one JSON
// line per thing it sees; stdin closing ends it.
import Pusher from 'pusher-js';

const out = (v) => process.stdout.write(JSON.stringify(v) + '\n');

const pusher = new Pusher(process.env.PUSHER_KEY, {
  cluster: 'local', // pusher-js wants one; wsHost decides where it connects
  wsHost: '127.0.0.1',
  wsPort: Number(process.env.SOKETI_PORT),
  forceTLS: false,
  enabledTransports: ['ws'],
  channelAuthorization: { endpoint: process.env.AUTH_ENDPOINT, transport: 'ajax' },
});

pusher.connection.bind('state_change', ({ current }) => out({ type: 'state', state: current }));
for (const name of process.env.CHANNELS.split(',')) {
  const ch = pusher.subscribe(name);
  ch.bind('pusher:subscription_succeeded', () => out({ type: 'subscribed', channel: name }));
  ch.bind('pusher:subscription_error', (e) => out({ type: 'refused', channel: name, error: e }));
  ch.bind_global((event, data) => {
    if (!event.startsWith('pusher:')) out({ type: 'event', channel: name, event, data });
  });
}

process.stdin.resume();
process.stdin.on('end', () => {
  pusher.disconnect();
  process.exit(0);
});
