package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
)

// created is a valid message.created whose data also holds the pairs kv.
func created(kv ...any) []byte {
	return encode(envelope(domain.TypeMessageCreated, with(messageCreated(), kv...)))
}

// padded is a valid message.created of exactly n bytes (an unknown field
// fills it up).
func padded(t testing.TB, n int) []byte {
	t.Helper()
	v := created("pad", "")
	if len(v) > n {
		t.Fatalf("an event takes %d bytes, more than %d", len(v), n)
	}
	return bytesReplace(v, `"pad":""`, `"pad":"`+strings.Repeat("p", n-len(v))+`"`)
}

// nested is data's value at key x, nested depth levels deep (counting data
// itself as 1): [[...[1]...]] for arrays, {"a":{"a":...1}} for objects.
func nested(depth int, arrays bool) json.RawMessage {
	inner := depth - 1 // data is one level
	if arrays {
		return json.RawMessage(strings.Repeat("[", inner) + "1" + strings.Repeat("]", inner))
	}
	return json.RawMessage(strings.Repeat(`{"a":`, inner) + "1" + strings.Repeat("}", inner))
}

func wantViolation(t *testing.T, value []byte, kind error, want string) {
	t.Helper()
	env, err := domain.Decode(value)
	if err == nil {
		t.Fatalf("Decode accepted %.80s... (type %s)", value, env.Type)
	}
	checkViolation(t, err)
	if !errors.Is(err, kind) {
		t.Errorf("error %q does not match %v", err, kind)
	}
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q\nwant      %q", got, want)
	}
}

func wantValid(t *testing.T, value []byte) {
	t.Helper()
	if _, err := domain.Decode(value); err != nil {
		t.Errorf("Decode(%.80s...) = %v, want it accepted", value, err)
	}
}

func TestDecodeValueSize(t *testing.T) {
	const limit = domain.DefaultMaxValueBytes
	if limit != 262144 {
		t.Errorf("DefaultMaxValueBytes = %d, want 262144 (256 KiB)", limit)
	}
	wantValid(t, padded(t, limit))
	wantViolation(t, padded(t, limit+1), domain.ErrTooLong, "invalid event: value: 262145 bytes, at most 262144")

	// The size is checked first: a large value that is not even UTF-8 is
	// refused for its size, without being read.
	huge := bytes.Repeat([]byte{0xff}, 8<<20)
	wantViolation(t, huge, domain.ErrTooLong, "invalid event: value: 8388608 bytes, at most 262144")

	t.Run("another limit", func(t *testing.T) {
		d := domain.Decoder{MaxValueBytes: 1000}
		if _, err := d.Decode(padded(t, 1000)); err != nil {
			t.Errorf("1000 bytes with a limit of 1000: %v", err)
		}
		_, err := d.Decode(padded(t, 1001))
		if err == nil || err.Error() != "invalid event: value: 1001 bytes, at most 1000" || !errors.Is(err, domain.ErrTooLong) {
			t.Errorf("1001 bytes with a limit of 1000: %v", err)
		}
	})
	t.Run("no limit", func(t *testing.T) {
		if _, err := (domain.Decoder{MaxValueBytes: -1}).Decode(padded(t, 4*limit)); err != nil {
			t.Errorf("%d bytes without a limit: %v", 4*limit, err)
		}
	})
	t.Run("zero is the default", func(t *testing.T) {
		if _, err := (domain.Decoder{}).Decode(padded(t, limit+1)); err == nil {
			t.Error("Decoder{} accepted a value over DefaultMaxValueBytes")
		}
	})
}

// The largest event the contract allows fits the default limit: a
// notification to 1,000 rooms of 128-character ids, every text at its
// limit in characters that JSON escapes (\u2028, 6 bytes each).
func TestDecodeLargestValidEventFits(t *testing.T) {
	esc := func(n int) string { return strings.Repeat("\u2028", n) }
	rooms := make([]any, domain.MaxRecipients)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("%0128d", i)
	}
	n := obj{"id": esc(domain.MaxNotificationIDLength), "type": esc(domain.MaxNotificationTypeLength),
		"title": esc(domain.MaxNotificationTitle), "body": esc(domain.MaxNotificationBody), "url": esc(domain.MaxNotificationURL)}
	v := with(envelope(domain.TypeRoomsNotification, obj{"roomIds": rooms, "notification": n}),
		"id", esc(domain.MaxEventIDLength), "source", esc(domain.MaxSourceLength), "subject", esc(domain.MaxSourceLength))
	value := encode(v)
	t.Logf("the largest event takes %d bytes", len(value))
	if len(value) > 200_000 {
		t.Errorf("the largest event takes %d bytes", len(value))
	}
	wantValid(t, value)
}

func TestDecodeSourceAndSubject(t *testing.T) {
	top := func(kv ...any) []byte {
		return encode(with(envelope(domain.TypeMessageCreated, messageCreated()), kv...))
	}
	if domain.MaxSourceLength != 1024 {
		t.Errorf("MaxSourceLength = %d, want 1024", domain.MaxSourceLength)
	}
	// Counted in UTF-16 units, as the other lengths.
	wantValid(t, top("source", strings.Repeat("s", 1024)))
	wantValid(t, top("source", strings.Repeat("😀", 512)))
	wantViolation(t, top("source", strings.Repeat("s", 1025)), domain.ErrTooLong, "invalid event: source: 1025 characters, at most 1024")
	wantViolation(t, top("source", strings.Repeat("😀", 513)), domain.ErrTooLong, "invalid event: source: 1026 characters, at most 1024")
	wantValid(t, top("subject", strings.Repeat("x", 1024)))
	wantViolation(t, top("subject", strings.Repeat("x", 1025)), domain.ErrTooLong, "invalid event: subject: 1025 characters, at most 1024")
}

func TestDecodeControlCharacters(t *testing.T) {
	top := func(kv ...any) []byte {
		return encode(with(envelope(domain.TypeMessageCreated, messageCreated()), kv...))
	}
	for _, field := range []string{"id", "source", "subject"} {
		for _, c := range []rune{0x01, '\t', '\n', '\r', 0x1f, 0x7f, 0x80, 0x85, 0x9f} {
			v := top(field, "a"+string(c)+"b")
			want := "invalid event: " + field + ": contains a control character (U+" + strings.ToUpper(strconv.FormatInt(int64(0x10000+c), 16)[1:]) + ")"
			wantViolation(t, v, domain.ErrInvalidField, want)
		}
		// Around the ranges: space, U+00A0 (no-break space), other letters.
		wantValid(t, top(field, "a b\u00a0c~é😀"))
	}
	// Elsewhere, control characters stay allowed (a message may hold a newline).
	wantValid(t, created("content", "line 1\nline 2\u0085"))
}

func TestDecodeDataDepth(t *testing.T) {
	if domain.MaxDataDepth != 512 {
		t.Errorf("MaxDataDepth = %d, want 512", domain.MaxDataDepth)
	}
	for _, arrays := range []bool{true, false} {
		wantValid(t, created("x", nested(domain.MaxDataDepth, arrays)))
		wantViolation(t, created("x", nested(domain.MaxDataDepth+1, arrays)), domain.ErrInvalidField,
			"invalid event: data: nested 513 levels deep, at most 512")
		wantViolation(t, created("x", nested(9000, arrays)), domain.ErrInvalidField,
			"invalid event: data: nested 9000 levels deep, at most 512")
	}
	// Brackets inside strings do not nest.
	wantValid(t, created("x", strings.Repeat("[{", 1000)))
	// Only data is stored: nesting in an unknown top-level attribute is not
	// its concern.
	deepTop := with(envelope(domain.TypeMessageCreated, messageCreated()), "ext", nested(1000, true))
	wantValid(t, encode(deepTop))
}

func TestDecodeDataNumbers(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	zeros := strings.Repeat
	valid := []string{
		"0", "-0", "1", "-1.5", "1e131071", "9.9e131071", "-1e131071", "1E+131071", "10e131070",
		"0.00001e131076", "1" + zeros("0", 131071), "1e-16383", "1.5e-16382", "123e-16382",
		"0." + zeros("0", 16382) + "1", "1." + zeros("0", 16383), "0e-16383", "0e1073741822",
		"1e0000000000000000000000000131071",
	}
	for _, n := range valid {
		wantValid(t, created("n", num(n)))
	}
	tests := []struct{ n, reason string }{
		{"1e1000000", "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{"1e131072", "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{"-1E131072", "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{"10e131071", "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{"0.00001e131077", "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{"1" + zeros("0", 131072), "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{"1e-16384", "number with 16384 digits after the decimal point, Postgres' numeric holds at most 16383"},
		{"1.5e-16383", "number with 16384 digits after the decimal point, Postgres' numeric holds at most 16383"},
		{"0e-16384", "number with 16384 digits after the decimal point, Postgres' numeric holds at most 16383"},
		{"1." + zeros("0", 16384), "number with 16384 digits after the decimal point, Postgres' numeric holds at most 16383"},
		{"0e1073741823", "number with an exponent out of Postgres' numeric range (-1073741823 < e < 1073741823)"},
		{"0e-1073741823", "number with an exponent out of Postgres' numeric range (-1073741823 < e < 1073741823)"},
		{"1e99999999999999999999999", "number with an exponent out of Postgres' numeric range (-1073741823 < e < 1073741823)"},
	}
	for _, tt := range tests {
		value := created("n", num(tt.n))
		_, err := domain.Decode(value)
		if err == nil {
			t.Errorf("number %.40s accepted", tt.n)
			continue
		}
		checkViolation(t, err)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Kind != domain.ErrInvalidField || ve.Field != "data.n" || ve.Reason != tt.reason {
			t.Errorf("number %.40s: %#v, want field data.n, reason %q", tt.n, err, tt.reason)
		}
		if want := tt.n; len(want) <= 64 && ve != nil && ve.Value != want {
			t.Errorf("number %.40s: Value = %q", tt.n, ve.Value)
		}
	}

	// Where the number is, as a path.
	paths := []struct {
		data any
		want string
	}{
		{obj{"a": []any{1, obj{"b": num("1e131072")}}}, "invalid event: data.extra.a[1].b 1e131072: number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
		{obj{"a b": []any{num("1e-16384")}}, `invalid event: data.extra["a b"][0] 1e-16384: number with 16384 digits after the decimal point, Postgres' numeric holds at most 16383`},
		{obj{"x": []any{[]any{}, []any{0, 1, num("-1e999999")}}}, "invalid event: data.extra.x[1][2] -1e999999: number out of Postgres' numeric range (at most 131072 digits before the decimal point)"},
	}
	for _, p := range paths {
		wantViolation(t, created("extra", p.data), domain.ErrInvalidField, p.want)
	}
	// A long number is shown cut.
	_, err := domain.Decode(created("n", num("1"+zeros("0", 200000))))
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Value != "1"+zeros("0", 63)+"..." {
		t.Errorf("a 200001-digit number: %v", err)
	}
	// Numbers in strings and in unknown top-level attributes are not data's.
	wantValid(t, created("s", "1e1000000"))
	wantValid(t, encode(with(envelope(domain.TypeMessageCreated, messageCreated()), "ext", num("1e1000000"))))
}

// Postgres prints a stored number in full (1e100000 as 100,001 digits): the
// numbers of data may not print as more than the value may hold, or an
// event of a few bytes would come back from the event store as gigabytes.
func TestDecodeDataNumbersPrintedSize(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	// 1e131071 prints as 131072 digits: two fit in 262144, three do not.
	wantValid(t, created("a", num("1e131071"), "b", num("1e131071")))
	wantViolation(t, created("a", num("1e131071"), "b", num("1e131071"), "c", num("1")), domain.ErrInvalidField,
		"invalid event: data: numbers Postgres prints as 262145 characters, at most 262144")
	d := domain.Decoder{MaxValueBytes: 1000}
	if _, err := d.Decode(created("n", num("1e999"))); err != nil { // 1000 digits
		t.Errorf("1e999 with a limit of 1000: %v", err)
	}
	if _, err := d.Decode(created("n", num("-1e-997"))); err != nil { // -0.000...1: 1000 characters
		t.Errorf("-1e-997 with a limit of 1000: %v", err)
	}
	for _, n := range []string{"1e1000", "-1e999", "1e-999", "0e-999"} {
		if _, err := d.Decode(created("n", num(n))); err == nil || !strings.Contains(err.Error(), "numbers Postgres prints as 1001 characters, at most 1000") {
			t.Errorf("%s with a limit of 1000: %v", n, err)
		}
	}
	// Without a limit, only Postgres' own range counts.
	if _, err := (domain.Decoder{MaxValueBytes: -1}).Decode(created("a", num("1e131071"), "b", num("1e131071"), "c", num("1e131071"))); err != nil {
		t.Errorf("no limit: %v", err)
	}
}
