package domain

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidEvent is wrapped by every violation of the event contract: such a
// message is never retried, it goes to the dead-letter topic.
var ErrInvalidEvent = errors.New("invalid event")

// The kinds of contract violation. Every error Decode returns matches
// ErrInvalidEvent and exactly one of these with errors.Is.
var (
	// ErrNotJSON: the value is not valid UTF-8, not JSON, or not a JSON object.
	ErrNotJSON = errors.New("not JSON")
	// ErrSpecVersion: specversion is not "1.0".
	ErrSpecVersion = errors.New("unsupported specversion")
	// ErrUnknownType: type is not one of EventTypes.
	ErrUnknownType = errors.New("unknown event type")
	// ErrMissingField: a required field is missing or null.
	ErrMissingField = errors.New("missing field")
	// ErrInvalidID: a room, user or message id breaks the id rule (see IsValidID).
	ErrInvalidID = errors.New("invalid id")
	// ErrContentTooLong: a message's content is longer than MaxContentLength.
	ErrContentTooLong = errors.New("content too long")
	// ErrTooLong: any other text or list is longer than its limit.
	ErrTooLong = errors.New("too long")
	// ErrEmpty: a text or list that needs at least one character or entry is empty.
	ErrEmpty = errors.New("empty")
	// ErrInvalidTime: a timestamp is not RFC 3339 or out of range.
	ErrInvalidTime = errors.New("invalid time")
	// ErrInvalidField: any other violation: a value of the wrong JSON type, NUL
	// in a text, a bad datacontenttype or socket id, data_base64.
	ErrInvalidField = errors.New("invalid field")
)

// ErrUnknownMessage is the reason an edit or delete of a message that does not
// exist is dead-lettered. The event itself is valid (it does not match
// ErrInvalidEvent): it can be re-driven once the message exists.
var ErrUnknownMessage = errors.New("unknown message")

// ErrUnstorable is the reason an event the event store refuses for good is
// dead-lettered: Postgres rejected it with a data exception or a program
// limit (SQLSTATE class 22 or 54), or a projection of it alone kept failing
// with the same kind of server error. The decoder refuses what it knows
// Postgres would; this is what remains. It does not match ErrInvalidEvent:
// the event may be re-driven once the store takes it.
var ErrUnstorable = errors.New("refused by the event store")

// IsPermanent reports whether err means the message can never succeed as it
// is, so it goes to the dead-letter topic instead of being retried: a contract
// violation (ErrInvalidEvent), an unknown message (ErrUnknownMessage) or an
// event the store refuses (ErrUnstorable).
func IsPermanent(err error) bool {
	return errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrUnknownMessage) || errors.Is(err, ErrUnstorable)
}

// ValidationError is one contract violation. Its Error() is a short single
// line, "invalid event: data.roomId \"a b\": not a valid id (...)", fit for
// the dead-letter header reason_poisoned. It matches ErrInvalidEvent and Kind
// with errors.Is.
type ValidationError struct {
	// Field is the path of the offending field ("data.notification.title",
	// "data.userIds[3]"), empty when the violation is about the whole value.
	Field string
	// Value is the offending value, quoted and shortened; empty when not shown.
	Value string
	// Reason says what is wrong ("missing", "4001 characters, at most 4000").
	Reason string
	// Kind is the finer sentinel: ErrNotJSON, ErrMissingField, ...
	Kind error
}

// Error returns "invalid event: <field>[ <value>]: <reason>".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.Grow(len(ErrInvalidEvent.Error()) + len(e.Field) + len(e.Value) + len(e.Reason) + 4)
	b.WriteString(ErrInvalidEvent.Error())
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Value != "" {
			b.WriteByte(' ')
			b.WriteString(e.Value)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the finer sentinel.
func (e *ValidationError) Unwrap() error { return e.Kind }

// Is makes every ValidationError match ErrInvalidEvent.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidEvent }

const (
	maxQuotedValue  = 64  // runes of a value shown in an error
	maxQuotedBytes  = 100 // bytes of a quoted value shown in an error
	maxReasonLength = 200 // bytes of a reason taken from elsewhere (a JSON error)
)

// quote renders a value for an error: quoted, escaped to one line, and cut
// to maxQuotedValue characters and maxQuotedBytes bytes ("..." marks a cut).
func quote(s string) string {
	cut := false
	if utf8.RuneCountInString(s) > maxQuotedValue {
		s, cut = firstRunes(s, maxQuotedValue), true
	}
	q := strconv.Quote(s)
	for len(q) > maxQuotedBytes {
		s, cut = firstRunes(s, utf8.RuneCountInString(s)/2), true
		q = strconv.Quote(s)
	}
	if cut {
		q += "..."
	}
	return q
}

func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// notJSON explains why a value is not JSON.
func notJSON(err *json.SyntaxError) error {
	reason := "not JSON: " + err.Error() + " (byte " + strconv.FormatInt(err.Offset, 10) + ")"
	return &ValidationError{Kind: ErrNotJSON, Reason: oneLine(reason, maxReasonLength)}
}

// oneLine makes s a single line of at most max bytes.
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return s
}

// invalidUTF8At returns the offset of the first byte that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}
