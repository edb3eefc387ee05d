package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
)

var at = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func createdEnv(content string, avatar *string) domain.Envelope {
	return domain.Envelope{ID: "ev-c", Type: domain.TypeMessageCreated, Event: domain.MessageCreated{
		RoomID: "room-42", MessageID: "m-1", AuthorID: "u-7", AuthorName: "Ada<3", AuthorAvatar: avatar,
		Content: content, CreatedAt: at}}
}

func editedEnv(content string) domain.Envelope {
	return domain.Envelope{ID: "ev-e", Type: domain.TypeMessageEdited, Event: domain.MessageEdited{
		RoomID: "room-42", MessageID: "m-1", Content: content, EditedAt: at.Add(time.Minute), EditorID: "u-7"}}
}

func roomDelivery(t *testing.T, env domain.Envelope) domain.Delivery {
	t.Helper()
	d, err := domain.RoomDelivery(env, 7)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// redactedByHand is the payload unredacted with its content emptied and the
// marker added as the last field: what the contract says a redacted payload
// is, written without the code under test.
func redactedByHand(t *testing.T, unredacted, content string) string {
	t.Helper()
	field := `"content":"` + content + `"`
	if strings.Count(unredacted, field) != 1 || !strings.HasSuffix(unredacted, "}") {
		t.Fatalf("cannot find %s once in %s", field, unredacted)
	}
	return strings.TrimSuffix(strings.Replace(unredacted, field, `"content":""`, 1), "}") + `,"redacted":true}`
}

// A redacted new-message or message-edited payload is the unredacted one,
// byte for byte (field order, no spaces, no HTML escaping), with an empty
// content and "redacted":true; RoomDelivery renders a stored event whose text
// a delete emptied the same way.
func TestRedactedPayloadKeepsTheShapeOfEveryPayloadWithTheMarker(t *testing.T) {
	avatar := "https://example.com/a.png?x=1&y=<2>"
	for _, tc := range []struct {
		name             string
		full, emptied    domain.Envelope
		content, wantEnd string
	}{
		{"new-message", createdEnv("hello <b>", &avatar), createdEnv("", &avatar), "hello <b>", `"roomId":"room-42","seq":7,"redacted":true}`},
		{"new-message without avatar", createdEnv("hello", nil), createdEnv("", nil), "hello", `"seq":7,"redacted":true}`},
		{"message-edited", editedEnv("edited&more"), editedEnv(""), "edited&more", `"roomId":"room-42","seq":7,"redacted":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := roomDelivery(t, tc.full)
			if strings.Contains(d.Data, "redacted") {
				t.Fatalf("an unredacted payload carries the marker: %s", d.Data)
			}
			want := redactedByHand(t, d.Data, tc.content)
			r, err := domain.RedactDelivery(d)
			if err != nil {
				t.Fatal(err)
			}
			if r.Data != want {
				t.Errorf("RedactDelivery:\n got  %s\n want %s", r.Data, want)
			}
			if !strings.HasSuffix(r.Data, tc.wantEnd) || strings.Contains(r.Data, " ") {
				t.Errorf("RedactDelivery: %s, want compact and ending %s", r.Data, tc.wantEnd)
			}
			if r.Truncated || r.TooLarge || r.ID != d.ID || r.Seq != d.Seq || r.Name != d.Name || r.EventID != d.EventID {
				t.Errorf("RedactDelivery changed the delivery's facts: %+v from %+v", r, d)
			}
			if stored := roomDelivery(t, tc.emptied); stored.Data != want {
				t.Errorf("RoomDelivery of the redacted stored event:\n got  %s\n want %s", stored.Data, want)
			}
			again, err := domain.RedactDelivery(r)
			if err != nil || again.Data != r.Data {
				t.Errorf("redacting twice: %s, %v; want %s", again.Data, err, r.Data)
			}
		})
	}
}

// A truncated payload loses "truncated" when redacted: the two markers never
// go together, and the client has no full text to fetch.
func TestRedactedPayloadIsNeverTruncated(t *testing.T) {
	long := strings.Repeat("秘", domain.MaxContentLength) // 12 KB in UTF-8: truncated
	for _, env := range []domain.Envelope{createdEnv(long, nil), editedEnv(long)} {
		d := roomDelivery(t, env)
		if !d.Truncated || !strings.Contains(d.Data, `"truncated":true`) {
			t.Fatalf("%s of 4,000 CJK characters is not truncated: %.120s", d.Name, d.Data)
		}
		r, err := domain.RedactDelivery(d)
		if err != nil {
			t.Fatal(err)
		}
		empty := createdEnv("", nil)
		if d.Name == domain.PusherMessageEdited {
			empty = editedEnv("")
		}
		if want := roomDelivery(t, empty).Data; r.Data != want {
			t.Errorf("redacted truncated %s:\n got  %s\n want %s", d.Name, r.Data, want)
		}
		if r.Truncated || strings.Contains(r.Data, "truncated") || strings.Contains(r.Data, "秘") {
			t.Errorf("redacted %s is still truncated or carries text: %v %s", d.Name, r.Truncated, r.Data)
		}
	}
}

// Deliveries without text are left as they are.
func TestRedactDeliveryLeavesOtherPayloadsAlone(t *testing.T) {
	del := domain.Envelope{ID: "ev-d", Type: domain.TypeMessageDeleted, Event: domain.MessageDeleted{
		RoomID: "room-42", MessageID: "m-1", DeletedAt: at, DeletedBy: "u-7"}}
	d := roomDelivery(t, del)
	r, err := domain.RedactDelivery(d)
	if err != nil || r.Data != d.Data {
		t.Errorf("RedactDelivery(message-deleted) = %s, %v; want %s unchanged", r.Data, err, d.Data)
	}
	if _, err := domain.RedactDelivery(domain.Delivery{Name: domain.PusherNewMessage, Data: "{not json"}); err == nil {
		t.Error("RedactDelivery of a payload that is not JSON: no error")
	}
}
