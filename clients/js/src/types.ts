// The payloads roomcast sends on a room's channel and serves from its history
// API (docs/contract.md, "Pusher: channels, events, payloads").

/** `new-message`: a message was created. */
export interface NewMessage {
  id: string;
  content: string;
  authorId: string;
  authorName: string;
  authorAvatar: string | null;
  createdAt: string;
  roomId: string;
  seq: number;
  /** The text was cut to fit Pusher's 10 KB. The client fetches the full
   * text before it hands the event over, so the app sees this only when
   * that fetch failed (see RoomHandlers.onError). */
  truncated?: boolean;
  /** The message was deleted since: its text was emptied. */
  redacted?: boolean;
}

/** `message-edited`: a message's text changed. */
export interface MessageEdited {
  id: string;
  content: string;
  editedAt: string;
  roomId: string;
  seq: number;
  truncated?: boolean;
  redacted?: boolean;
}

/** `message-deleted`: a message was deleted. */
export interface MessageDeleted {
  id: string;
  deletedAt: string;
  roomId: string;
  seq: number;
}

/** `user-joined`: a user became a member of the room. */
export interface UserJoined {
  userId: string;
  userName: string;
  userAvatar: string | null;
  joinedAt: string;
  roomId: string;
  seq: number;
}

/** `user-left`: a user stopped being a member of the room. */
export interface UserLeft {
  userId: string;
  leftAt: string;
  roomId: string;
  seq: number;
}

/** The room events by their Pusher event name. */
export interface RoomEventData {
  'new-message': NewMessage;
  'message-edited': MessageEdited;
  'message-deleted': MessageDeleted;
  'user-joined': UserJoined;
  'user-left': UserLeft;
}

/** The name of a room event. */
export type RoomEventName = keyof RoomEventData;

/** The names of the room events, in the contract's order. */
export const roomEventNames: readonly RoomEventName[] = [
  'new-message',
  'message-edited',
  'message-deleted',
  'user-joined',
  'user-left',
];

/** One room event as the app receives it: `seq` 1, 2, 3, ... in order, each
 * once. Switch on `event` to narrow `data`. */
export type RoomEvent = {
  [N in RoomEventName]: { event: N; roomId: string; seq: number; data: RoomEventData[N] };
}[RoomEventName];

/** A `notification` (on a room's or a user's channel; no seq, no order). */
export interface Notification {
  id: string;
  type: string;
  title: string;
  body: string;
  url?: string;
  truncated?: boolean;
}

/** A member of a room's presence channel, as roomcast signs it from the
 * room's membership (`avatar` is "" when the member has none). */
export interface Member {
  id: string;
  info: { name: string; avatar: string };
}

/** One entry of `GET /rooms/{roomId}/events`. */
export interface FeedEntry {
  seq: number;
  event: string;
  data: Record<string, unknown>;
}

/** The answer of `GET /rooms/{roomId}/events?after_seq=N&limit=L`. */
export interface EventsPage {
  roomId: string;
  /** The room's last seq now (0 for a room without events). */
  lastSeq: number;
  /** More events follow the last one of this page. */
  more: boolean;
  events: FeedEntry[];
}

/** The answer of `GET /rooms/{roomId}/messages/{messageId}`. */
export interface Message {
  id: string;
  roomId: string;
  seq: number;
  authorId: string;
  authorName: string;
  authorAvatar: string | null;
  content: string;
  createdAt: string;
  editedAt: string | null;
  deletedAt: string | null;
  deleted: boolean;
}
