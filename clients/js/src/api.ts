import { RoomcastError, type RoomcastErrorKind } from './errors.js';
import type { EventsPage, Message } from './types.js';

/** Returns the user's current bearer token (a JWT), or nothing when the API
 * identifies users another way (a gateway's header, a cookie). Called before
 * every request, so a getter that refreshes tokens keeps working. */
export type TokenGetter = () => string | null | undefined | Promise<string | null | undefined>;

/** What a channel authorization answers (pusher-js's ChannelAuthorizationData). */
export interface ChannelAuth {
  auth: string;
  channel_data?: string;
}

/** What a user authentication answers (pusher-js's UserAuthenticationData). */
export interface UserAuth {
  auth: string;
  user_data: string;
}

/** The calls the client makes to roomcast's HTTP API. */
export interface HistoryApi {
  events(roomId: string, afterSeq: number, limit: number, signal?: AbortSignal): Promise<EventsPage>;
  message(roomId: string, messageId: string, signal?: AbortSignal): Promise<Message>;
}

/** roomcast's HTTP API at base (for example `https://chat.example.com/api`),
 * called with the bearer token of getToken. */
export class Api implements HistoryApi {
  private readonly base: string;

  constructor(
    base: string,
    private readonly getToken: TokenGetter,
    private readonly fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis),
    private readonly extraHeaders: Record<string, string> = {},
  ) {
    this.base = base.replace(/\/+$/, '');
  }

  /** `GET /rooms/{roomId}/events?after_seq=N&limit=L`: the room's events after seq N. */
  async events(roomId: string, afterSeq: number, limit: number, signal?: AbortSignal): Promise<EventsPage> {
    const q = new URLSearchParams({ after_seq: String(afterSeq), limit: String(limit) });
    const page = (await this.call('history', `/rooms/${encodeURIComponent(roomId)}/events?${q}`, { method: 'GET', signal }, roomId)) as EventsPage;
    if (!page || !Array.isArray(page.events) || typeof page.lastSeq !== 'number' || typeof page.more !== 'boolean') {
      throw new RoomcastError('history', 'events page without lastSeq, more and events', { roomId });
    }
    return page;
  }

  /** `GET /rooms/{roomId}/messages/{messageId}`: one message with its full text. */
  async message(roomId: string, messageId: string, signal?: AbortSignal): Promise<Message> {
    const path = `/rooms/${encodeURIComponent(roomId)}/messages/${encodeURIComponent(messageId)}`;
    const m = (await this.call('message', path, { method: 'GET', signal }, roomId)) as Message;
    if (!m || typeof m.content !== 'string') {
      throw new RoomcastError('message', `message ${messageId} without content`, { roomId });
    }
    return m;
  }

  /** `POST /pusher/auth`: authorizes socketId on a private or presence channel,
   * with the form body pusher-js sends itself. */
  async authorizeChannel(socketId: string, channelName: string): Promise<ChannelAuth> {
    const body = new URLSearchParams({ socket_id: socketId, channel_name: channelName });
    return (await this.call('subscription', '/pusher/auth', formPost(body))) as ChannelAuth;
  }

  /** `POST /pusher/user-auth`: signs socketId in as the user (pusher-js signin). */
  async authenticateUser(socketId: string): Promise<UserAuth> {
    const body = new URLSearchParams({ socket_id: socketId });
    return (await this.call('subscription', '/pusher/user-auth', formPost(body))) as UserAuth;
  }

  private async call(kind: RoomcastErrorKind, path: string, init: RequestInit, roomId?: string): Promise<unknown> {
    const headers = new Headers(init.headers);
    for (const [k, v] of Object.entries(this.extraHeaders)) {
      headers.set(k, v);
    }
    headers.set('Accept', 'application/json');
    const token = await this.getToken();
    if (token) {
      headers.set('Authorization', `Bearer ${token}`);
    }
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + path, { ...init, headers });
    } catch (err) {
      if (init.signal?.aborted) {
        throw err;
      }
      throw new RoomcastError(kind, `${init.method ?? 'GET'} ${path}: ${String(err)}`, { roomId, cause: err });
    }
    const text = await res.text();
    if (!res.ok) {
      throw new RoomcastError(kind, `${init.method ?? 'GET'} ${path}: ${res.status} ${reason(text)}`, {
        status: res.status,
        roomId,
        fatal: res.status === 403 || res.status === 404,
      });
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new RoomcastError(kind, `${init.method ?? 'GET'} ${path}: answer is not JSON`, { status: res.status, roomId, cause: err });
    }
  }
}

function formPost(body: URLSearchParams): RequestInit {
  return {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: body.toString(),
  };
}

/** The reason of a JSON error answer (`{"error": reason}`), else the start of the body. */
function reason(body: string): string {
  try {
    const v = JSON.parse(body) as { error?: unknown };
    if (typeof v?.error === 'string') {
      return v.error;
    }
  } catch {
    // not JSON: fall through
  }
  return body.slice(0, 200);
}
