package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/internal/chattest"
)

// errorBodyReason decodes an error answer, failing unless it is JSON with a reason.
func errorBodyReason(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("error answer %q is not {\"error\": reason}: %v", body, err)
	}
	return e.Error
}

// Every history endpoint of a room answers 403 alike to a user who never
// was a member, to one who left, and for a room that does not exist (no
// existence leak), and 401 without an identity.
func TestHistoryRefusesNonMembersAndUnknownRoomsAlike(t *testing.T) {
	f := newHistFixture(t, 0)
	f.project(chattest.MemberJoined("room-1", "u-1"), chattest.MemberJoined("room-1", "u-2"),
		chattest.MessageCreated("room-1", "m-1", "hello"), chattest.MemberLeft("room-1", "u-2"))
	for _, path := range []string{"/rooms/%s/events", "/rooms/%s/messages", "/rooms/%s/messages/m-1"} {
		if status, _, body := f.get("u-1", fmt.Sprintf(path, "room-1")); status != http.StatusOK {
			t.Fatalf("member: GET %s: %d %s", path, status, body)
		}
		var reasons []string
		for _, c := range []struct{ user, room string }{{"u-3", "room-1"}, {"u-2", "room-1"}, {"u-1", "no-such-room"}} {
			status, _, body := f.get(c.user, fmt.Sprintf(path, c.room))
			if status != http.StatusForbidden {
				t.Errorf("GET %s as %s: %d %s, want 403", fmt.Sprintf(path, c.room), c.user, status, body)
				continue
			}
			reasons = append(reasons, errorBodyReason(t, body))
		}
		if len(reasons) == 3 && (reasons[0] != reasons[1] || reasons[1] != reasons[2]) {
			t.Errorf("GET %s: the refusals differ: %q", path, reasons)
		}
		if status, _, _ := f.get("", fmt.Sprintf(path, "room-1")); status != http.StatusUnauthorized {
			t.Errorf("GET %s without identity: %d, want 401", path, status)
		}
	}
}

// Parameters that are not what the API takes are refused with 400 and a
// reason naming them, before anything is read.
func TestHistoryAnswers400ToBadParameters(t *testing.T) {
	f := newHistFixture(t, 0)
	f.project(chattest.MemberJoined("room-1", "u-1"))
	for path, names := range map[string]string{
		"/rooms/room-1/events?after_seq=-1":                "after_seq",
		"/rooms/room-1/events?after_seq=x":                 "after_seq",
		"/rooms/room-1/events?after_seq=1e3":               "after_seq",
		"/rooms/room-1/events?limit=0":                     "limit",
		"/rooms/room-1/events?limit=-5":                    "limit",
		"/rooms/room-1/events?limit=ten":                   "limit",
		"/rooms/room-1/events?limit=99999999999999999999":  "limit",
		"/rooms/room-1/messages?before_seq=0":              "before_seq",
		"/rooms/room-1/messages?before_seq=abc":            "before_seq",
		"/rooms/room-1/messages?limit=0":                   "limit",
		"/rooms/room%2A1/events":                           "roomId",
		"/rooms/" + strings.Repeat("r", 129) + "/messages": "roomId",
		"/rooms/room-1/messages/m%201":                     "messageId",
		"/users/me/notifications?after=abc":                "after",
		"/users/me/notifications?after=-1":                 "after",
		"/users/me/notifications?limit=0":                  "limit",
	} {
		status, _, body := f.get("u-1", path)
		if status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s, want 400", path, status, body)
			continue
		}
		if r := errorBodyReason(t, body); !strings.HasPrefix(r, names+":") {
			t.Errorf("GET %s: reason %q does not name %s", path, r, names)
		}
	}
}

// A limit above MaxPage is cut to it, and more tells the client to go on;
// without a limit a page is MaxPage when that is below the default.
func TestHistoryCapsTheLimit(t *testing.T) {
	f := newHistFixture(t, 4)
	f.project(chattest.MemberJoined("room-1", "u-1"))
	for _, id := range chattest.IDs("m", 9) {
		f.project(chattest.MessageCreated("room-1", id, "text"))
	}
	for _, path := range []string{"/rooms/room-1/events?limit=1000", "/rooms/room-1/events"} {
		var page feedPage
		f.getJSON("u-1", path, &page)
		if len(page.Events) != 4 || !page.More || page.LastSeq != 10 {
			t.Errorf("GET %s: %d events, more %v, lastSeq %d; want 4, true, 10", path, len(page.Events), page.More, page.LastSeq)
		}
	}
	var ms messagesPage
	f.getJSON("u-1", "/rooms/room-1/messages?limit=500", &ms)
	if len(ms.Messages) != 4 || !ms.More {
		t.Errorf("messages with limit 500: %d, more %v; want 4, true", len(ms.Messages), ms.More)
	}
}

// Paging the events endpoint from after_seq=0, each page after the last
// seq of the one before, walks the whole room: every seq once, in order,
// lastSeq the room's, more false exactly on the last page.
func TestEventsEndpointPagesTheWholeRoomWithoutGaps(t *testing.T) {
	f := newHistFixture(t, 0)
	f.project(chattest.MemberJoined("room-1", "u-1"))
	for i, id := range chattest.IDs("m", 12) {
		f.project(chattest.MessageCreated("room-1", id, "text "+id))
		if i%4 == 0 {
			f.project(chattest.MessageEdited("room-1", id, "edited"))
		}
	}
	f.project(chattest.MessageDeleted("room-1", "m-2"), chattest.MemberJoined("room-1", "u-2"))
	const last = 1 + 12 + 3 + 2
	var after int64
	for pages := 1; ; pages++ {
		var page feedPage
		f.getJSON("u-1", fmt.Sprintf("/rooms/room-1/events?after_seq=%d&limit=5", after), &page)
		if page.LastSeq != last {
			t.Fatalf("page %d: lastSeq %d, want %d", pages, page.LastSeq, last)
		}
		for _, e := range page.Events {
			if e.Seq != after+1 {
				t.Fatalf("page %d: seq %d after %d", pages, e.Seq, after)
			}
			var p struct {
				Seq int64 `json:"seq"`
			}
			if err := json.Unmarshal(e.Data, &p); err != nil || p.Seq != e.Seq {
				t.Fatalf("seq %d: payload %s has seq %d (%v)", e.Seq, e.Data, p.Seq, err)
			}
			after = e.Seq
		}
		if page.More != (after < last) {
			t.Fatalf("page %d ending at %d: more %v", pages, after, page.More)
		}
		if !page.More {
			if pages != 4 {
				t.Errorf("walked the room in %d pages, want 4", pages)
			}
			break
		}
	}
	var page feedPage
	f.getJSON("u-1", fmt.Sprintf("/rooms/room-1/events?after_seq=%d", last+10), &page)
	if len(page.Events) != 0 || page.More || page.LastSeq != last {
		t.Errorf("after beyond the last seq: %d events, more %v, lastSeq %d", len(page.Events), page.More, page.LastSeq)
	}
}

// An unchanged page revalidates to 304 without a body, never cached
// without asking (private, no-cache); a delete that redacts a message on
// the page changes it, and its ETag.
func TestHistoryRevalidatesWithETag(t *testing.T) {
	f := newHistFixture(t, 0)
	f.project(chattest.MemberJoined("room-1", "u-1"), chattest.MessageCreated("room-1", "m-1", "secret"))
	for _, path := range []string{"/rooms/room-1/events?after_seq=0&limit=2", "/rooms/room-1/messages", "/rooms/room-1/messages/m-1"} {
		status, h, body := f.get("u-1", path)
		etag := h.Get("ETag")
		if status != http.StatusOK || etag == "" || h.Get("Cache-Control") != "private, no-cache" {
			t.Fatalf("GET %s: %d, ETag %q, Cache-Control %q", path, status, etag, h.Get("Cache-Control"))
		}
		if !strings.Contains(string(body), "secret") {
			t.Fatalf("GET %s: %s", path, body)
		}
		if status, h2, body := f.get("u-1", path, "If-None-Match", etag); status != http.StatusNotModified || len(body) != 0 || h2.Get("ETag") != etag {
			t.Errorf("GET %s If-None-Match %s: %d, %d bytes, ETag %q; want 304, none, the same", path, etag, status, len(body), h2.Get("ETag"))
		}
		if status, _, _ := f.get("u-1", path, "If-None-Match", `"other"`); status != http.StatusOK {
			t.Errorf("GET %s with another ETag: %d, want 200", path, status)
		}
	}
	_, h, _ := f.get("u-1", "/rooms/room-1/events?after_seq=0&limit=2")
	f.project(chattest.MessageDeleted("room-1", "m-1"))
	status, h2, body := f.get("u-1", "/rooms/room-1/events?after_seq=0&limit=2", "If-None-Match", h.Get("ETag"))
	if status != http.StatusOK || h2.Get("ETag") == h.Get("ETag") || strings.Contains(string(body), "secret") {
		t.Errorf("full page after a delete: %d, ETag %q (was %q), %s", status, h2.Get("ETag"), h.Get("ETag"), body)
	}
}

type messagesPage struct {
	RoomID        string        `json:"roomId"`
	More          bool          `json:"more"`
	Messages      []messageBody `json:"messages"`
	NextBeforeSeq *int64        `json:"nextBeforeSeq"`
}

type messageBody struct {
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

// Message history comes newest first, with nextBeforeSeq for the next
// page, deleted messages as tombstones and edits with their time; one
// message comes with the whole text its payload carried truncated, and a
// message of another room is not found through this one.
func TestMessagesEndpointsAnswerHistoryAndWholeText(t *testing.T) {
	f := newHistFixture(t, 0)
	long := strings.Repeat("語", 4000)
	f.project(chattest.MemberJoined("room-1", "u-1"),
		chattest.MessageCreated("room-1", "m-1", "first"),
		chattest.MessageCreated("room-1", "m-2", long),
		chattest.MessageCreated("room-1", "m-3", "to delete"),
		chattest.MessageEdited("room-1", "m-1", "first, edited"),
		chattest.MessageDeleted("room-1", "m-3"),
		chattest.MessageCreated("room-1", "m-4", "<last> & newest"),
		chattest.MessageCreated("room-2", "m-9", "elsewhere"))
	var seen []string
	path := "/rooms/room-1/messages?limit=2"
	for {
		var page messagesPage
		f.getJSON("u-1", path, &page)
		for _, m := range page.Messages {
			seen = append(seen, m.ID)
			switch m.ID {
			case "m-3":
				if !m.Deleted || m.DeletedAt == nil || m.Content != "" || m.Seq != 4 {
					t.Errorf("m-3 is not a tombstone: %+v", m)
				}
			case "m-1":
				if m.Content != "first, edited" || m.EditedAt == nil || m.Deleted {
					t.Errorf("m-1: %+v", m)
				}
			case "m-4":
				if m.Content != "<last> & newest" || m.AuthorName != "Ada" || m.AuthorAvatar != nil || m.RoomID != "room-1" {
					t.Errorf("m-4: %+v", m)
				}
			}
		}
		if !page.More {
			if page.NextBeforeSeq != nil {
				t.Errorf("last page has nextBeforeSeq %d", *page.NextBeforeSeq)
			}
			break
		}
		path = fmt.Sprintf("/rooms/room-1/messages?limit=2&before_seq=%d", *page.NextBeforeSeq)
	}
	if got := strings.Join(seen, ","); got != "m-4,m-3,m-2,m-1" {
		t.Errorf("history %s, want m-4,m-3,m-2,m-1", got)
	}
	var m messageBody
	f.getJSON("u-1", "/rooms/room-1/messages/m-2", &m)
	if m.Content != long || m.Seq != 3 {
		t.Errorf("m-2: seq %d, %d bytes of text; want seq 3 and all %d", m.Seq, len(m.Content), len(long))
	}
	f.project(chattest.MemberJoined("room-2", "u-1"))
	if status, _, body := f.get("u-1", "/rooms/room-1/messages/m-9"); status != http.StatusNotFound {
		t.Errorf("m-9 of room-2 through room-1: %d %s, want 404", status, body)
	} else {
		errorBodyReason(t, body)
	}
}

type notificationsPage struct {
	Notifications []struct {
		Cursor     string          `json:"cursor"`
		EventID    string          `json:"eventId"`
		OccurredAt string          `json:"occurredAt"`
		Data       json.RawMessage `json:"data"`
		FullBody   *string         `json:"fullBody"`
	} `json:"notifications"`
	More bool   `json:"more"`
	Next string `json:"next"`
}

// A user's notifications page oldest first with the next cursor, each with
// the payload their channel got and the whole body when it was truncated;
// another user's are not theirs.
func TestNotificationsEndpointAnswersTheUsersOwn(t *testing.T) {
	f := newHistFixture(t, 0)
	var mine []*chattest.Event
	for i := range 5 {
		e := chattest.UserNotification([]string{"u-2", "u-1"}, fmt.Sprintf("n%d", i))
		if i == 2 {
			e.Data["notification"].(map[string]any)["body"] = strings.Repeat("\x01", 2000)
		}
		mine = append(mine, e)
		f.project(e, chattest.UserNotification([]string{"u-3"}, "not u-1's"))
	}
	sent := map[string]string{}
	ds, err := f.outbox.Pending(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		sent[d.EventID] = d.Data
	}
	var got []string
	after := ""
	for pages := 1; ; pages++ {
		var page notificationsPage
		f.getJSON("u-1", "/users/me/notifications?limit=2&after="+after, &page)
		for _, n := range page.Notifications {
			i := len(got)
			got = append(got, n.EventID)
			if i < len(mine) && (n.EventID != mine[i].ID || string(n.Data) != sent[n.EventID]) {
				t.Errorf("notification %d: %s %s; want %s %s", i, n.EventID, n.Data, mine[i].ID, sent[mine[i].ID])
			}
			if (n.FullBody != nil) != (i == 2) || i == 2 && *n.FullBody != strings.Repeat("\x01", 2000) {
				t.Errorf("notification %d: fullBody %v", i, n.FullBody)
			}
		}
		after = page.Next
		if !page.More {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != 5 {
		t.Errorf("u-1 has %d notifications, want 5", len(got))
	}
	var page notificationsPage
	f.getJSON("u-4", "/users/me/notifications", &page)
	if len(page.Notifications) != 0 || page.More || page.Next != "0" {
		t.Errorf("a user without notifications: %+v", page)
	}
}
