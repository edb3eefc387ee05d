package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/roomcast/roomcast/internal/jsonstr"
)

// The limits of the contract. Lengths are counted in UTF-16 code units, as the
// front end's JavaScript counts them.
const (
	MaxIDLength               = 128  // room, user and message ids
	MaxEventIDLength          = 256  // the CloudEvents id
	MaxContentLength          = 4000 // content of a message
	MaxNameLength             = 200  // authorName, userName (roomcast's own cap)
	MaxAvatarLength           = 2048 // authorAvatar, userAvatar (roomcast's own cap)
	MaxRecipients             = 1000 // userIds, roomIds of a notification, as sent
	MaxNotificationIDLength   = 128
	MaxNotificationTypeLength = 64
	MaxNotificationTitle      = 200
	MaxNotificationBody       = 2000
	MaxNotificationURL        = 2048
	MaxSocketIDLength         = 64 // roomcast's own cap on a Pusher socket id
)

const (
	specVersion     = "1.0"
	idRule          = "1..128 of [A-Za-z0-9_-=@,.;]"
	maxQuotedValue  = 64  // runes of a value shown in an error
	maxQuotedBytes  = 100 // bytes of a quoted value shown in an error
	maxReasonLength = 200 // bytes of a reason taken from elsewhere (a JSON error)
)

// Decode parses and validates one Kafka message value as a CloudEvents 1.0
// JSON chat event (structured mode), as DESIGN.md's event contract states.
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
	arena := getMembersArena()
	defer putMembersArena(arena)
	var top objectMembers
	ok := false
	if validJSON(value) {
		top, ok = splitObject(value, arena)
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
			Reason: "not a JSON object (got " + jsonKind(bytes.TrimLeft(value, " \t\r\n")) + ")"}
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
	if m := top.member("data"); m != nil {
		r.checkData(data.raw, int(m.depth), m.numbers, d.maxValueBytes())
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

// IsValidID reports whether s is a valid room, user or message id: 1..128
// characters of [A-Za-z0-9_\-=@,.;], so that every Pusher channel name built
// from it is valid.
func IsValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idChar[s[i]] {
			return false
		}
	}
	return true
}

var idChar = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=@,.;" {
		t[c] = true
	}
	return t
}()

func knownType(t string) bool {
	for _, k := range EventTypes {
		if string(k) == t {
			return true
		}
	}
	return false
}

// reader reads the fields of one JSON object and records the first violation
// in *err; once there is one, every read returns a zero value.
type reader struct {
	raw     []byte // the object itself
	members objectMembers
	arena   *objectMembers // where the members of its objects go (see splitObject)
	path    string         // "data", "data.notification"; "" at the top level
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
	raw := r.members.get(key)
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

// isRFC3339 checks the syntax of an RFC 3339 date-time:
// 2006-01-02T15:04:05[.fraction](Z|+07:00); time.Parse checks the ranges.
func isRFC3339(s string) bool {
	const layout = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(layout)+1 {
		return false
	}
	if !digitsLike(s[:len(layout)], layout) {
		return false
	}
	s = s[len(layout):]
	if s[0] == '.' {
		n := 1
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		s = s[n:]
	}
	return s == "Z" || len(s) == 6 && (s[0] == '+' || s[0] == '-') && digitsLike(s[1:], "dd:dd")
}

// digitsLike reports whether s has a digit where pattern has 'd' and the
// pattern's byte everywhere else.
func digitsLike(s, pattern string) bool {
	if len(s) != len(pattern) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if pattern[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != pattern[i] {
			return false
		}
	}
	return true
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
		r.fail(sub.path, "", ErrInvalidField, "want a JSON object, got "+jsonKind(raw))
		return sub
	}
	sub.raw = raw
	members, ok := splitObject(raw, r.arena) // raw is valid JSON: Decode checked all of it
	if !ok {                                 // cannot happen: raw starts with '{'
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
		r.fail(field, "", ErrInvalidField, "want an array, got "+jsonKind(raw))
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

func isSocketID(s string) bool {
	if len(s) > MaxSocketIDLength {
		return false
	}
	dot := strings.IndexByte(s, '.')
	return dot > 0 && allDigits(s[:dot]) && allDigits(s[dot+1:])
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isJSONMediaType reports whether ct is application/json, parameters allowed.
func isJSONMediaType(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "application/json")
}

// stringValue decodes raw, a valid JSON value, as a string. It refuses other
// JSON types and strings holding NUL or an unpaired surrogate.
func stringValue(raw []byte) (s string, kind error, reason string) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", ErrInvalidField, "want a string, got " + jsonKind(raw)
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
	if dec, ok := jsonstr.AppendUnescaped(make([]byte, 0, len(raw)-2), raw[1:len(raw)-1]); ok && raw[len(raw)-1] == '"' {
		// dec is new and never written again: the string can share it.
		return unsafe.String(unsafe.SliceData(dec), len(dec)), nil, ""
	}
	if err := json.Unmarshal(raw, &s); err != nil { // cannot happen: raw is a valid string
		return "", ErrInvalidField, "not a JSON string"
	}
	return s, nil, ""
}

// badEscape finds, in valid JSON, a \u0000 escape or a \u escape of an
// unpaired UTF-16 surrogate (encoding/json would turn it into U+FFFD, Postgres
// jsonb refuses it). It returns the reason and the escape, or "" when there is
// none.
func badEscape(raw []byte) (reason, escape string) {
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\\')
		if j < 0 || i+j+1 >= len(raw) {
			return "", ""
		}
		i += j
		if raw[i+1] != 'u' {
			i += 2 // the escaped character may be a backslash
			continue
		}
		switch c := hex4(raw, i+2); {
		case c == 0:
			return "contains NUL", `\u0000`
		case utf16.IsSurrogate(c):
			if !bytes.HasPrefix(raw[i+6:], []byte(`\u`)) || utf16.DecodeRune(c, hex4(raw, i+8)) == utf8.RuneError {
				return "contains an unpaired UTF-16 surrogate", string(raw[i : i+6])
			}
			i += 6 // skip the high half; the low half follows
		}
		i += 2
	}
}

// hex4 returns the value of the four hex digits at raw[at:], or -1.
func hex4(raw []byte, at int) rune {
	if at+4 > len(raw) {
		return -1
	}
	c, err := strconv.ParseUint(string(raw[at:at+4]), 16, 16)
	if err != nil {
		return -1
	}
	return rune(c)
}

// utf16Len counts s in UTF-16 code units, as JavaScript's length does.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// jsonKind names the JSON type of raw, a valid JSON value.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

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
