package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/roomcast/roomcast/domain/internal/wire"
)

const (
	specVersion = "1.0"
	idRule      = "1..128 of [A-Za-z0-9_-=@,.;]"
)

// Decode parses and validates one Kafka message value as a CloudEvents 1.0
// JSON chat event (structured mode), as docs/contract.md states.
//
// Every contract violation returns a *ValidationError that matches
// ErrInvalidEvent and one finer sentinel (ErrNotJSON, ErrMissingField, ...)
// with errors.Is; its Error() is one short line naming the field, e.g.
// `invalid event: data.content: 4001 characters, at most 4000`, fit for the
// dead-letter header reason_poisoned (values are quoted and cut at 64
// characters, the payload is never included).
//
// Beyond the contract's table, Decode enforces:
//   - specversion "1.0", a non-empty id of at most 256 characters, a non-empty
//     source, an optional RFC 3339 time, an optional datacontenttype that is
//     application/json (parameters allowed); data must be a JSON object and
//     data_base64 is not supported;
//   - authorName and userName are 1..200 characters, authorAvatar and
//     userAvatar at most 2048 (the contract sets no limit; roomcast caps them so
//     a Pusher payload stays under 10 KB); a notification's id is 1..128
//     characters of any kind;
//   - timestamps are RFC 3339, strictly (2026-11-27T08:00:00.000Z; fractional
//     seconds and offsets accepted, kept as parsed), after the zero time and
//     before the year 10000 in UTC;
//   - no text holds NUL, and data holds no \u0000 escape nor an unpaired UTF-16
//     surrogate escape anywhere, unknown fields included: Postgres jsonb, which
//     stores data as received, rejects both;
//   - socketId (data.socketId, else the top-level extension socketid) is
//     checked on room events only and must look like Pusher's "123.456".
//
// Keys match exactly (encoding/json's case-insensitive matching is not used),
// unknown fields are ignored, null is the same as missing and a value of the
// wrong JSON type is a violation. Envelope.Data holds the data object's bytes
// as received; Envelope.Event holds the typed value.
//
// What Postgres could not store is refused too (see limits.go): a value over
// DefaultMaxValueBytes (checked first, so a huge value costs nothing), a
// source or subject over MaxSourceLength characters, a control character in
// id, source or subject, data nested deeper than MaxDataDepth, a number in
// data that Postgres' numeric cannot hold, or numbers it would print as more
// characters than the value may have. Decoder sets another size limit.
func Decode(value []byte) (Envelope, error) { return Decoder{}.Decode(value) }

// Decode is the package's Decode with d's limits.
func (d Decoder) Decode(value []byte) (Envelope, error) {
	if max := d.maxValueBytes(); max > 0 && len(value) > max {
		return Envelope{}, valueTooLarge(len(value), max)
	}
	if !utf8.Valid(value) {
		return Envelope{}, &ValidationError{Kind: ErrNotJSON,
			Reason: "not valid UTF-8 (byte " + strconv.Itoa(invalidUTF8At(value)) + ")"}
	}
	// Unmarshal checks the syntax of all of value before it decodes anything.
	// A valid value that is not an object is then a type error, or a nil map
	// (null).
	arena := wire.GetArena()
	defer wire.PutArena(arena)
	var top wire.Members
	ok := false
	if wire.Valid(value) {
		top, ok = wire.SplitObject(value, arena)
	}
	if !ok {
		// Not an object: encoding/json says why.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(value, &m); err != nil || m == nil {
			if syntaxErr := (*json.SyntaxError)(nil); errors.As(err, &syntaxErr) {
				return Envelope{}, notJSON(syntaxErr)
			}
		}
		return Envelope{}, &ValidationError{Kind: ErrNotJSON,
			Reason: "not a JSON object (got " + wire.Kind(bytes.TrimLeft(value, " \t\r\n")) + ")"}
	}

	var firstErr error
	r := &reader{members: top, arena: arena, err: &firstErr}
	env := Envelope{}
	if v := r.str("specversion", true); firstErr == nil && v != specVersion {
		r.fail("specversion", quote(v), ErrSpecVersion, `want "`+specVersion+`"`)
	}
	typ := r.str("type", true)
	if firstErr == nil && !knownType(typ) {
		r.fail("type", quote(typ), ErrUnknownType, "unknown event type")
	}
	env.Type = EventType(typ)
	env.ID = r.text("id", 1, MaxEventIDLength, ErrTooLong)
	env.Source = r.text("source", 1, 0, nil)
	env.Subject = r.str("subject", false)
	r.checkEnvelopeText(env.ID, env.Source, env.Subject)
	if r.has("time") {
		env.Time = r.time("time")
	}
	if ct, ok := r.optStr("datacontenttype", false); ok && !isJSONMediaType(ct) {
		r.fail("datacontenttype", quote(ct), ErrInvalidField, `want "application/json"`)
	}
	if r.has("data_base64") {
		r.fail("data_base64", "", ErrInvalidField, "not supported, data must be a JSON object")
	}
	data := r.object("data")
	if firstErr != nil {
		return Envelope{}, firstErr
	}
	env.Data = bytes.Clone(data.raw) // not an alias of the message's bytes

	switch env.Type {
	case TypeMessageCreated:
		env.Event = MessageCreated{
			RoomID:       data.id("roomId"),
			MessageID:    data.id("messageId"),
			AuthorID:     data.id("authorId"),
			AuthorName:   data.text("authorName", 1, MaxNameLength, ErrTooLong),
			AuthorAvatar: data.optText("authorAvatar", MaxAvatarLength),
			Content:      data.text("content", 1, MaxContentLength, ErrContentTooLong),
			CreatedAt:    data.time("createdAt"),
		}
	case TypeMessageEdited:
		env.Event = MessageEdited{
			RoomID:    data.id("roomId"),
			MessageID: data.id("messageId"),
			Content:   data.text("content", 1, MaxContentLength, ErrContentTooLong),
			EditedAt:  data.time("editedAt"),
			EditorID:  data.id("editorId"),
		}
	case TypeMessageDeleted:
		env.Event = MessageDeleted{
			RoomID:    data.id("roomId"),
			MessageID: data.id("messageId"),
			DeletedAt: data.time("deletedAt"),
			DeletedBy: data.id("deletedBy"),
		}
	case TypeMemberJoined:
		env.Event = MemberJoined{
			RoomID:     data.id("roomId"),
			UserID:     data.id("userId"),
			UserName:   data.text("userName", 1, MaxNameLength, ErrTooLong),
			UserAvatar: data.optText("userAvatar", MaxAvatarLength),
			JoinedAt:   data.time("joinedAt"),
		}
	case TypeMemberLeft:
		env.Event = MemberLeft{
			RoomID: data.id("roomId"),
			UserID: data.id("userId"),
			LeftAt: data.time("leftAt"),
		}
	case TypeUserNotification:
		env.Event = UserNotification{
			UserIDs:      data.ids("userIds"),
			Notification: data.notification("notification"),
		}
	case TypeRoomsNotification:
		env.Event = RoomsNotification{
			RoomIDs:      data.ids("roomIds"),
			Notification: data.notification("notification"),
		}
	}
	if _, ok := env.Event.(RoomEvent); ok && firstErr == nil {
		// data.socketId wins over the top-level extension; the other one is
		// then not looked at.
		if data.has("socketId") {
			env.SocketID = data.socketID("socketId")
		} else if r.has("socketid") {
			env.SocketID = r.socketID("socketid")
		}
	}
	if m := top.Member("data"); m != nil {
		r.checkData(data.raw, int(m.Depth), m.Numbers, d.maxValueBytes())
	}
	if firstErr == nil {
		// Fields roomcast does not read are stored too (events.data is jsonb).
		if reason, esc := badEscape(env.Data); reason != "" {
			r.fail("data", "", ErrInvalidField, reason+" ("+esc+")")
		}
	}
	if firstErr != nil {
		return Envelope{}, firstErr
	}
	return env, nil
}

func knownType(t string) bool {
	for _, k := range EventTypes {
		if string(k) == t {
			return true
		}
	}
	return false
}
