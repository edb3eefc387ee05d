package domain

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/roomcast/roomcast/domain/internal/wire"
)

// reader reads the fields of one JSON object and records the first violation
// in *err; once there is one, every read returns a zero value.
type reader struct {
	raw     []byte // the object itself
	members wire.Members
	arena   *wire.Members // where the members of its objects go (see wire.SplitObject)
	path    string        // "data", "data.notification"; "" at the top level
	err     *error
}

func (r *reader) field(key string) string {
	if r.path == "" {
		return key
	}
	return r.path + "." + key
}

func (r *reader) fail(field, value string, kind error, reason string) {
	if *r.err == nil {
		*r.err = &ValidationError{Field: field, Value: value, Reason: reason, Kind: kind}
	}
}

// has reports whether key is present and not null.
func (r *reader) has(key string) bool {
	_, ok := r.get(key)
	return ok
}

// get returns the raw value of key; ok is false when it is missing or null.
// The key matches exactly, and the last of duplicate keys counts, as in
// JavaScript and Postgres jsonb (encoding/json's map semantics).
func (r *reader) get(key string) ([]byte, bool) {
	raw := r.members.Get(key)
	return raw, raw != nil && string(raw) != "null"
}

// str returns the string value of key; "" when missing or null, which is a
// violation when required.
func (r *reader) str(key string, required bool) string {
	s, _ := r.optStr(key, required)
	return s
}

func (r *reader) optStr(key string, required bool) (string, bool) {
	if *r.err != nil {
		return "", false
	}
	raw, ok := r.get(key)
	if !ok {
		if required {
			r.fail(r.field(key), "", ErrMissingField, "missing")
		}
		return "", false
	}
	s, kind, reason := stringValue(raw)
	if kind != nil {
		r.fail(r.field(key), "", kind, reason)
		return "", false
	}
	return s, true
}

// text returns a required string of min..max UTF-16 units (max 0: no limit);
// tooLong is the kind of violation when it is longer.
func (r *reader) text(key string, min, max int, tooLong error) string {
	s := r.str(key, true)
	if *r.err == nil {
		r.checkLength(r.field(key), s, min, max, tooLong)
	}
	return s
}

// optText returns an optional string of at most max UTF-16 units; nil when
// missing or null.
func (r *reader) optText(key string, max int) *string {
	s, ok := r.optStr(key, false)
	if !ok {
		return nil
	}
	r.checkLength(r.field(key), s, 0, max, ErrTooLong)
	return &s
}

func (r *reader) checkLength(field, s string, min, max int, tooLong error) {
	if min > 0 && s == "" {
		r.fail(field, "", ErrEmpty, "empty, at least "+strconv.Itoa(min)+" character")
		return
	}
	if max > 0 && len(s) > max { // a UTF-16 unit takes at least one byte
		if n := utf16Len(s); n > max {
			r.fail(field, "", tooLong, strconv.Itoa(n)+" characters, at most "+strconv.Itoa(max))
		}
	}
}

func (r *reader) id(key string) string {
	s := r.str(key, true)
	if *r.err == nil {
		r.checkID(r.field(key), s)
	}
	return s
}

func (r *reader) checkID(field, s string) {
	if IsValidID(s) {
		return
	}
	switch n := utf16Len(s); {
	case n == 0:
		r.fail(field, `""`, ErrInvalidID, "not a valid id (empty)")
	case n > MaxIDLength:
		r.fail(field, quote(s), ErrInvalidID,
			"not a valid id ("+strconv.Itoa(n)+" characters, at most "+strconv.Itoa(MaxIDLength)+")")
	default:
		r.fail(field, quote(s), ErrInvalidID, "not a valid id ("+idRule+")")
	}
}

// time returns a required RFC 3339 timestamp.
func (r *reader) time(key string) time.Time {
	s := r.str(key, true)
	if *r.err != nil {
		return time.Time{}
	}
	// time.Parse alone is lenient (it takes "T8:00:00" for "T08:00:00").
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !isRFC3339(s) {
		r.fail(r.field(key), quote(s), ErrInvalidTime, "not an RFC 3339 time")
		return time.Time{}
	}
	// Years past 9999 in UTC cannot be written back as RFC 3339, and the zero
	// time would read as "no time".
	if y := t.UTC().Year(); y < 1 || y > 9999 || t.IsZero() {
		r.fail(r.field(key), quote(s), ErrInvalidTime, "out of range (after 0001-01-01T00:00:00Z, before year 10000 in UTC)")
		return time.Time{}
	}
	return t
}

// object returns a reader of the required JSON object at key.
func (r *reader) object(key string) *reader {
	sub := &reader{path: r.field(key), arena: r.arena, err: r.err}
	if *r.err != nil {
		return sub
	}
	raw, ok := r.get(key)
	if !ok {
		r.fail(sub.path, "", ErrMissingField, "missing")
		return sub
	}
	if raw[0] != '{' {
		r.fail(sub.path, "", ErrInvalidField, "want a JSON object, got "+wire.Kind(raw))
		return sub
	}
	sub.raw = raw
	members, ok := wire.SplitObject(raw, r.arena) // raw is valid JSON: Decode checked all of it
	if !ok {                                      // cannot happen: raw starts with '{'
		r.fail(sub.path, "", ErrInvalidField, "not a JSON object")
	}
	sub.members = members
	return sub
}

// ids returns the required list of ids at key (1..MaxRecipients entries as
// sent), without duplicates, in the order of their first appearance.
func (r *reader) ids(key string) []string {
	if *r.err != nil {
		return nil
	}
	field := r.field(key)
	raw, ok := r.get(key)
	if !ok {
		r.fail(field, "", ErrMissingField, "missing")
		return nil
	}
	if raw[0] != '[' {
		r.fail(field, "", ErrInvalidField, "want an array, got "+wire.Kind(raw))
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil { // cannot happen: raw is a valid array
		r.fail(field, "", ErrInvalidField, "not an array")
		return nil
	}
	switch {
	case len(items) == 0:
		r.fail(field, "", ErrEmpty, "empty, at least 1 entry")
		return nil
	case len(items) > MaxRecipients:
		r.fail(field, "", ErrTooLong, strconv.Itoa(len(items))+" entries, at most "+strconv.Itoa(MaxRecipients))
		return nil
	}
	out := make([]string, 0, len(items))
	seen := make(map[string]struct{}, len(items))
	for i, item := range items {
		itemField := field + "[" + strconv.Itoa(i) + "]"
		if string(item) == "null" {
			r.fail(itemField, "", ErrInvalidID, "not a valid id (null)")
			return nil
		}
		s, kind, reason := stringValue(item)
		if kind != nil {
			r.fail(itemField, "", kind, reason)
			return nil
		}
		if r.checkID(itemField, s); *r.err != nil {
			return nil
		}
		if _, dup := seen[s]; !dup {
			seen[s] = struct{}{}
			out = append(out, s)
		}
	}
	return out
}

// notification returns the required notification object at key.
func (r *reader) notification(key string) Notification {
	n := r.object(key)
	if *r.err != nil {
		return Notification{}
	}
	return Notification{
		ID:    n.text("id", 1, MaxNotificationIDLength, ErrTooLong),
		Type:  n.text("type", 1, MaxNotificationTypeLength, ErrTooLong),
		Title: n.text("title", 1, MaxNotificationTitle, ErrTooLong),
		Body:  n.text("body", 0, MaxNotificationBody, ErrTooLong),
		URL:   n.optText("url", MaxNotificationURL),
	}
}

// socketID returns the present, non-null socket id at key, checked against
// Pusher's format \d+\.\d+.
func (r *reader) socketID(key string) string {
	s := r.str(key, false)
	if *r.err == nil && !isSocketID(s) {
		r.fail(r.field(key), quote(s), ErrInvalidField,
			`not a Pusher socket id ("123.456", at most `+strconv.Itoa(MaxSocketIDLength)+" characters)")
		return ""
	}
	return s
}

// stringValue decodes raw, a valid JSON value, as a string. It refuses other
// JSON types and strings holding NUL or an unpaired surrogate.
func stringValue(raw []byte) (s string, kind error, reason string) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", ErrInvalidField, "want a string, got " + wire.Kind(raw)
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		// Nothing to unescape: the string is the bytes between the quotes, as
		// json.Unmarshal would return them (value is valid UTF-8 JSON). This
		// saves about a third of the time of Decode.
		return string(raw[1 : len(raw)-1]), nil, ""
	}
	if r, esc := badEscape(raw); r != "" {
		return "", ErrInvalidField, r + " (" + esc + ")"
	}
	s, ok := wire.Unescape(raw)
	if !ok { // cannot happen: raw is a valid string
		return "", ErrInvalidField, "not a JSON string"
	}
	return s, nil, ""
}

// badEscape finds, in valid JSON, a \u0000 escape or a \u escape of an
// unpaired UTF-16 surrogate (encoding/json would turn it into U+FFFD, Postgres
// jsonb refuses it). It returns the reason and the escape, or "" when there is
// none.
func badEscape(raw []byte) (reason, escape string) {
	switch esc := wire.RefusedEscape(raw); esc {
	case "":
		return "", ""
	case `\u0000`:
		return "contains NUL", esc
	default:
		return "contains an unpaired UTF-16 surrogate", esc
	}
}
