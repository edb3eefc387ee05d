package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// defaultPage is the page size of a history request without a limit (or
// MaxPage, when that is lower).
const defaultPage = 100

// feedJSON is the answer of GET /rooms/{roomId}/events.
type feedJSON struct {
	RoomID  string          `json:"roomId"`
	LastSeq int64           `json:"lastSeq"`
	More    bool            `json:"more"`
	Events  []feedEventJSON `json:"events"`
}

type feedEventJSON struct {
	Seq   int64  `json:"seq"`
	Event string `json:"event"`
	// Data is the payload as Pusher was sent it, as a JSON object: written
	// byte for byte (see writeCacheable).
	Data json.RawMessage `json:"data"`
}

// roomEvents is GET /rooms/{roomId}/events?after_seq=N&limit=: catch-up.
func (s *Server) roomEvents(w http.ResponseWriter, r *http.Request) {
	room, ok := s.memberRoom(w, r)
	if !ok {
		return
	}
	after, ok := queryInt(w, r, "after_seq", 0)
	if !ok {
		return
	}
	limit, ok := s.pageLimit(w, r)
	if !ok {
		return
	}
	entries, last, more, err := projections.RoomFeed(r.Context(), s.db, room, after, limit)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	out := feedJSON{RoomID: room, LastSeq: last, More: more, Events: make([]feedEventJSON, len(entries))}
	for i, e := range entries {
		out.Events[i] = feedEventJSON{Seq: e.Seq, Event: e.Event, Data: json.RawMessage(e.Data)}
	}
	s.writeCacheable(w, r, out)
}

// messageJSON is a message as the history answers it. A deleted message is
// a tombstone: content empty, deletedAt set, deleted true.
type messageJSON struct {
	ID           string  `json:"id"`
	RoomID       string  `json:"roomId"`
	Seq          int64   `json:"seq"`
	AuthorID     string  `json:"authorId"`
	AuthorName   string  `json:"authorName"`
	AuthorAvatar *string `json:"authorAvatar"`
	Content      string  `json:"content"`
	CreatedAt    string  `json:"createdAt"`
	EditedAt     *string `json:"editedAt"`
	DeletedAt    *string `json:"deletedAt"`
	Deleted      bool    `json:"deleted"`
}

func toMessageJSON(m projections.Message) messageJSON {
	return messageJSON{ID: m.ID, RoomID: m.RoomID, Seq: m.Seq, AuthorID: m.AuthorID, AuthorName: m.AuthorName,
		AuthorAvatar: m.AuthorAvatar, Content: m.Content, CreatedAt: domain.FormatTime(m.CreatedAt),
		EditedAt: formatOptTime(m.EditedAt), DeletedAt: formatOptTime(m.DeletedAt), Deleted: m.DeletedAt != nil}
}

func formatOptTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := domain.FormatTime(*t)
	return &s
}

// messagesJSON is the answer of GET /rooms/{roomId}/messages.
type messagesJSON struct {
	RoomID   string        `json:"roomId"`
	More     bool          `json:"more"`
	Messages []messageJSON `json:"messages"`
	// NextBeforeSeq is the before_seq of the next (older) page, when More.
	NextBeforeSeq *int64 `json:"nextBeforeSeq,omitempty"`
}

// roomMessages is GET /rooms/{roomId}/messages?before_seq=&limit=: message
// history, newest first.
func (s *Server) roomMessages(w http.ResponseWriter, r *http.Request) {
	room, ok := s.memberRoom(w, r)
	if !ok {
		return
	}
	before, ok := queryInt(w, r, "before_seq", 1)
	if !ok {
		return
	}
	limit, ok := s.pageLimit(w, r)
	if !ok {
		return
	}
	ms, more, err := projections.RoomMessages(r.Context(), s.db, room, before, limit)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	out := messagesJSON{RoomID: room, More: more, Messages: make([]messageJSON, len(ms))}
	for i, m := range ms {
		out.Messages[i] = toMessageJSON(m)
	}
	if more {
		next := ms[len(ms)-1].Seq
		out.NextBeforeSeq = &next
	}
	s.writeCacheable(w, r, out)
}

// roomMessage is GET /rooms/{roomId}/messages/{messageId}: one message with
// its whole text (for a payload marked truncated).
func (s *Server) roomMessage(w http.ResponseWriter, r *http.Request) {
	room, ok := s.memberRoom(w, r)
	if !ok {
		return
	}
	id := r.PathValue("messageId")
	if !domain.IsValidID(id) {
		writeError(w, http.StatusBadRequest, "messageId: not a valid id")
		return
	}
	m, found, err := projections.RoomMessage(r.Context(), s.db, room, id)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "no such message in this room")
		return
	}
	s.writeCacheable(w, r, toMessageJSON(m))
}

// notificationsJSON is the answer of GET /users/me/notifications.
type notificationsJSON struct {
	Notifications []notificationJSON `json:"notifications"`
	More          bool               `json:"more"`
	// Next is the cursor to pass as after for the next page: the last
	// notification's, or the request's when there is none.
	Next string `json:"next"`
}

type notificationJSON struct {
	Cursor     string          `json:"cursor"`
	EventID    string          `json:"eventId"`
	OccurredAt string          `json:"occurredAt"`
	Data       json.RawMessage `json:"data"` // the payload as Pusher was sent it
	// FullBody is the whole body when data carries it truncated.
	FullBody *string `json:"fullBody,omitempty"`
}

// myNotifications is GET /users/me/notifications?after=&limit=: the
// notifications sent to the user's channel, oldest first after a cursor.
func (s *Server) myNotifications(w http.ResponseWriter, r *http.Request) {
	after := int64(0)
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after: not a cursor this API gave")
			return
		}
		after = n
	}
	limit, ok := s.pageLimit(w, r)
	if !ok {
		return
	}
	ns, more, err := projections.UserNotifications(r.Context(), s.db, userID(r), after, limit)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	out := notificationsJSON{Notifications: make([]notificationJSON, len(ns)), More: more, Next: strconv.FormatInt(after, 10)}
	for i, n := range ns {
		c := strconv.FormatInt(n.Position, 10)
		out.Notifications[i] = notificationJSON{Cursor: c, EventID: n.EventID, OccurredAt: domain.FormatTime(n.OccurredAt),
			Data: json.RawMessage(n.Data)}
		if n.Truncated {
			body := n.Body
			out.Notifications[i].FullBody = &body
		}
		out.Next = c
	}
	s.writeCacheable(w, r, out)
}
