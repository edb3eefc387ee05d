import PusherImport, {
  type Channel,
  type ChannelAuthorizationCallback,
  type Options,
  type PresenceChannel,
  type UserAuthenticationCallback,
} from 'pusher-js';

import { Api, type HistoryApi, type TokenGetter } from './api.js';
import { RoomcastError } from './errors.js';
import { Sequencer } from './sequencer.js';
import { roomEventNames, type Member, type Notification, type RoomEvent } from './types.js';

// Not exported by pusher-js's index.
interface ChannelAuthorizationRequestParams {
  socketId: string;
  channelName: string;
}
interface UserAuthenticationRequestParams {
  socketId: string;
}

// pusher-js is a CommonJS module: Node hands over module.exports, some
// bundlers its `default`.
const Pusher: typeof PusherImport =
  (PusherImport as unknown as { default?: typeof PusherImport }).default ?? PusherImport;

/** pusher-js options (cluster, or wsHost/wsPort/forceTLS/enabledTransports
 * for a self-hosted server, ...) without the authorization ones, which the
 * client sets to roomcast's endpoints. */
export type PusherOptions = Omit<Options, 'channelAuthorization' | 'userAuthentication' | 'authEndpoint' | 'authTransport' | 'auth' | 'authorizer'>;

/** What RoomcastClient needs. */
export interface ClientOptions {
  /** roomcast's HTTP API, for example `https://chat.example.com/api`: the
   * client calls `<apiBase>/pusher/auth`, `<apiBase>/rooms/...`. */
  apiBase: string;
  /** The Pusher app key. */
  key: string;
  /** pusher-js options; `cluster` is required by pusher-js even when
   * `wsHost` points elsewhere. */
  pusher: PusherOptions;
  /** The user's bearer token for every API call (see TokenGetter). */
  token?: TokenGetter;
  /** Headers added to every API call (for example the user header of a
   * development API that trusts one instead of a token). */
  headers?: Record<string, string>;
  /** fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Events asked per history page (default 100). */
  pageSize?: number;
  /** Backoff of failed history calls (defaults 250 ms doubling to 30 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Catch up every so many ms even without a sign of a gap (0, the
   * default: only on gaps and (re)subscriptions). A seq jump reveals a lost
   * delivery only when a later one arrives; this bounds how long the last
   * events of a burst can stay missing. */
  catchUpEveryMs?: number;
  /** Another pusher-js build (for example pusher-js/with-encryption). */
  PusherClass?: typeof PusherImport;
}

/** What the app hears from one room. */
export interface RoomHandlers {
  /** The room's events in seq order, each seq once. */
  onEvent: (event: RoomEvent) => void;
  /** Notifications sent to the room (no seq, no order). */
  onNotification?: (notification: Notification) => void;
  /** The presence channel's members, after each change (with `presence`). */
  onMembers?: (members: Member[]) => void;
  /** Errors; the room goes on after each unless `fatal`. */
  onError?: (err: RoomcastError) => void;
  /** The room's channel is subscribed (again, after a reconnect); the
   * catch-up of what came meanwhile starts now. */
  onSubscribed?: () => void;
}

/** How to join a room. */
export interface RoomOptions {
  /** The seq the app already has (from its own history load): only later
   * events are handed over. 0 (the default) hands over the whole history;
   * `'latest'` starts at the room's current last seq. */
  afterSeq?: number | 'latest';
  /** Also subscribe to `presence-room-{roomId}` and report its members. */
  presence?: boolean;
}

/**
 * RoomcastClient connects one user to roomcast: pusher-js subscriptions
 * authorized by roomcast's API with the user's token, and per room the
 * events in seq order with the gaps filled from the history API.
 */
export class RoomcastClient {
  /** The pusher-js instance (for its connection state, signin, ...). */
  readonly pusher: PusherImport;
  /** roomcast's HTTP API with the user's token. */
  readonly api: Api;
  private readonly rooms = new Map<string, Room>();
  private readonly authFailures = new Map<string, RoomcastError>();
  private wasConnected = false;

  constructor(private readonly opts: ClientOptions) {
    this.api = new Api(opts.apiBase, opts.token ?? (() => undefined), opts.fetch, opts.headers);
    const P = opts.PusherClass ?? Pusher;
    this.pusher = new P(opts.key, {
      ...opts.pusher,
      channelAuthorization: { customHandler: (p, cb) => this.authorize(p, cb) },
      userAuthentication: { customHandler: (p, cb) => this.authenticate(p, cb) },
    } as Options);
    this.pusher.connection.bind('state_change', (s: { previous: string; current: string }) => {
      if (s.current !== 'connected') {
        return;
      }
      if (this.wasConnected) {
        // Back after a drop: what came meanwhile is only in history. The
        // resubscriptions catch up too; this covers a room whose
        // resubscription is slow.
        for (const room of this.rooms.values()) {
          void room.catchUp();
        }
      }
      this.wasConnected = true;
    });
  }

  /** Subscribes to a room (`private-room-{roomId}`, and with `presence`
   * `presence-room-{roomId}`) and hands its events to handlers. */
  joinRoom(roomId: string, handlers: RoomHandlers, options: RoomOptions = {}): Room {
    if (this.rooms.has(roomId)) {
      throw new Error(`room ${roomId} is already joined: leave it first`);
    }
    const room = new Room(this, roomId, handlers, options, this.opts, this.api);
    this.rooms.set(roomId, room);
    return room;
  }

  /** Subscribes to the user's notifications (`private-user-{userId}`);
   * returns the function that unsubscribes. */
  notifications(userId: string, onNotification: (n: Notification) => void, onError?: (err: RoomcastError) => void): () => void {
    const name = `private-user-${userId}`;
    const channel = this.pusher.subscribe(name);
    channel.bind('notification', onNotification);
    channel.bind('pusher:subscription_error', (data: unknown) => onError?.(this.subscriptionError(name, data)));
    return () => this.pusher.unsubscribe(name);
  }

  /** Leaves every room and closes the connection. */
  disconnect(): void {
    for (const room of [...this.rooms.values()]) {
      room.leave();
    }
    this.pusher.disconnect();
  }

  /** @internal */
  forget(roomId: string, room: Room): void {
    if (this.rooms.get(roomId) === room) {
      this.rooms.delete(roomId);
    }
  }

  /** @internal The error of a refused subscription to channel. */
  subscriptionError(channel: string, data: unknown): RoomcastError {
    const ours = this.authFailures.get(channel);
    if (ours) {
      this.authFailures.delete(channel);
      return ours;
    }
    const d = (data ?? {}) as { error?: unknown; status?: unknown };
    const status = typeof d.status === 'number' ? d.status : undefined;
    const reason = typeof d.error === 'string' ? d.error : JSON.stringify(data);
    return new RoomcastError('subscription', `subscription to ${channel} refused: ${reason}`, { status, fatal: true });
  }

  private authorize(p: ChannelAuthorizationRequestParams, cb: ChannelAuthorizationCallback): void {
    this.api.authorizeChannel(p.socketId, p.channelName).then(
      (auth) => cb(null, auth),
      (err: unknown) => {
        const status = err instanceof RoomcastError ? err.status : undefined;
        const e = new RoomcastError('subscription', `subscription to ${p.channelName} refused: ${String((err as Error)?.message ?? err)}`, {
          status,
          fatal: true,
          cause: err,
        });
        this.authFailures.set(p.channelName, e);
        cb(e, null);
      },
    );
  }

  private authenticate(p: UserAuthenticationRequestParams, cb: UserAuthenticationCallback): void {
    this.api.authenticateUser(p.socketId).then(
      (auth) => cb(null, auth),
      (err: unknown) => cb(err instanceof Error ? err : new Error(String(err)), null),
    );
  }
}

/** One joined room: its subscriptions and its Sequencer. */
export class Room {
  readonly roomId: string;
  private readonly seq: Sequencer;
  private readonly channelName: string;
  private readonly presenceName: string | null;
  private presence: PresenceChannel | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private left = false;

  /** @internal Use RoomcastClient.joinRoom. */
  constructor(
    private readonly client: RoomcastClient,
    roomId: string,
    private readonly handlers: RoomHandlers,
    options: RoomOptions,
    clientOpts: ClientOptions,
    api: HistoryApi,
  ) {
    this.roomId = roomId;
    this.seq = new Sequencer({
      roomId,
      api,
      deliver: handlers.onEvent,
      onError: (e) => this.handlers.onError?.(e),
      afterSeq: options.afterSeq,
      pageSize: clientOpts.pageSize,
      retryMinMs: clientOpts.retryMinMs,
      retryMaxMs: clientOpts.retryMaxMs,
    });
    const pusher = client.pusher;
    this.channelName = `private-room-${roomId}`;
    const channel: Channel = pusher.subscribe(this.channelName);
    for (const name of roomEventNames) {
      channel.bind(name, (data: unknown) => this.seq.live(name, data));
    }
    channel.bind('notification', (data: Notification) => this.handlers.onNotification?.(data));
    // Fired on the first subscription and on each resubscription after a
    // reconnect: what came before it is in history.
    channel.bind('pusher:subscription_succeeded', () => {
      void this.seq.catchUp();
      this.handlers.onSubscribed?.();
    });
    channel.bind('pusher:subscription_error', (data: unknown) => this.fail(this.channelName, data));

    this.presenceName = options.presence ? `presence-room-${roomId}` : null;
    if (this.presenceName) {
      const p = pusher.subscribe(this.presenceName) as PresenceChannel;
      this.presence = p;
      const changed = () => this.handlers.onMembers?.(this.members());
      p.bind('pusher:subscription_succeeded', changed);
      p.bind('pusher:member_added', changed);
      p.bind('pusher:member_removed', changed);
      p.bind('pusher:subscription_error', (data: unknown) => this.fail(this.presenceName!, data));
    }
    if (clientOpts.catchUpEveryMs && clientOpts.catchUpEveryMs > 0) {
      this.timer = setInterval(() => void this.seq.catchUp(), clientOpts.catchUpEveryMs);
    }
  }

  /** The seq of the last event handed to onEvent. */
  get lastSeq(): number {
    return this.seq.lastSeq;
  }

  /** Fetches what history holds after lastSeq now (also done on every
   * (re)subscription and gap); resolves once handed over. */
  catchUp(): Promise<void> {
    return this.seq.catchUp();
  }

  /** Resolves once no fetch or hand-over is in progress. */
  idle(): Promise<void> {
    return this.seq.idle();
  }

  /** The presence channel's members now (empty without `presence`). */
  members(): Member[] {
    const out: Member[] = [];
    this.presence?.members.each((m: { id: string; info: Member['info'] }) => out.push({ id: m.id, info: m.info }));
    return out;
  }

  /** Unsubscribes; nothing more is handed over. */
  leave(): void {
    if (this.left) {
      return;
    }
    this.left = true;
    if (this.timer) {
      clearInterval(this.timer);
    }
    this.seq.close();
    this.client.pusher.unsubscribe(this.channelName);
    if (this.presenceName) {
      this.client.pusher.unsubscribe(this.presenceName);
    }
    this.client.forget(this.roomId, this);
  }

  private fail(channel: string, data: unknown): void {
    const e = this.client.subscriptionError(channel, data);
    this.handlers.onError?.(
      new RoomcastError('subscription', e.message, { status: e.status, roomId: this.roomId, fatal: true, cause: e.cause }),
    );
  }
}
