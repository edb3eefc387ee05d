package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"
)

// Canonical returns raw, a valid JSON value, in domain.CanonicalJSON's form:
// what Marshal writes after json.Decoder (with UseNumber) decoded raw into
// an any. It walks raw once and copies what needs no change (nearly every
// string and number) instead of building maps and re-encoding them.
func Canonical(raw []byte) ([]byte, error) {
	c := canonicalizer{raw: raw, out: make([]byte, 0, len(raw))}
	i, err := c.value(SkipSpace(raw, 0), 0)
	if err != nil {
		return nil, err
	}
	if SkipSpace(raw, i) != len(raw) {
		return nil, errNotCanonicalizable
	}
	return c.out, nil
}

// Marshal writes v as encoding/json does without HTML escapes (<, > and &
// as they are) and without the Encoder's trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

var errNotCanonicalizable = errors.New("not a single valid JSON value")

type canonicalizer struct {
	raw     []byte
	out     []byte
	scratch []byte // a string's decoded contents
}

type canonicalMember struct {
	key        []byte // decoded
	rawKey     []byte // the key as written, quotes included
	start, end int    // the value in raw
}

// value writes the value starting at raw[i] and returns the index after it.
func (c *canonicalizer) value(i, depth int) (int, error) {
	raw := c.raw
	if i >= len(raw) || depth > maxDepth {
		return 0, errNotCanonicalizable
	}
	switch raw[i] {
	case '"':
		return c.str(i)
	case '{':
		return c.object(i, depth)
	case '[':
		c.out = append(c.out, '[')
		i = SkipSpace(raw, i+1)
		if i < len(raw) && raw[i] == ']' {
			c.out = append(c.out, ']')
			return i + 1, nil
		}
		for {
			var err error
			if i, err = c.value(i, depth+1); err != nil {
				return 0, err
			}
			i = SkipSpace(raw, i)
			if i >= len(raw) {
				return 0, errNotCanonicalizable
			}
			switch raw[i] {
			case ',':
				c.out = append(c.out, ',')
				i = SkipSpace(raw, i+1)
			case ']':
				c.out = append(c.out, ']')
				return i + 1, nil
			default:
				return 0, errNotCanonicalizable
			}
		}
	default: // number, true, false, null: as written
		end := SkipValue(raw, i)
		if tok := raw[i:end]; !jsonLiteral(tok) {
			return 0, errNotCanonicalizable
		}
		c.out = append(c.out, raw[i:end]...)
		return end, nil
	}
}

// jsonLiteral reports whether tok is true, false, null or a JSON number:
// what is copied as written must be valid, or a batch's insert of it as
// jsonb would fail for every event in the batch.
func jsonLiteral(tok []byte) bool {
	switch string(tok) {
	case "true", "false", "null":
		return true
	}
	i := 0
	if i < len(tok) && tok[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	switch {
	case i < len(tok) && tok[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(tok) && tok[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(tok)
}

func (c *canonicalizer) object(i, depth int) (int, error) {
	raw := c.raw
	var buf [16]canonicalMember
	members := buf[:0]
	i = SkipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		c.out = append(c.out, '{', '}')
		return i + 1, nil
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return 0, errNotCanonicalizable
		}
		kend := SkipString(raw, i)
		key, err := unquoteBytes(raw[i:kend])
		if err != nil {
			return 0, err
		}
		m := canonicalMember{key: key, rawKey: raw[i:kend]}
		i = SkipSpace(raw, kend)
		if i >= len(raw) || raw[i] != ':' {
			return 0, errNotCanonicalizable
		}
		i = SkipSpace(raw, i+1)
		m.start = i
		if i = SkipValue(raw, i); i == m.start {
			return 0, errNotCanonicalizable
		}
		m.end = i
		members = append(members, m)
		i = SkipSpace(raw, i)
		if i >= len(raw) {
			return 0, errNotCanonicalizable
		}
		if raw[i] == '}' {
			i++
			break
		}
		if raw[i] != ',' {
			return 0, errNotCanonicalizable
		}
		i = SkipSpace(raw, i+1)
	}
	// Sorted by key; of equal keys the last written wins (a map keeps it).
	slices.SortStableFunc(members, func(a, b canonicalMember) int { return bytes.Compare(a.key, b.key) })
	c.out = append(c.out, '{')
	first := true
	for n, m := range members {
		if n+1 < len(members) && bytes.Equal(members[n+1].key, m.key) {
			continue
		}
		if !first {
			c.out = append(c.out, ',')
		}
		first = false
		if _, err := c.str(0, m.rawKey...); err != nil {
			return 0, err
		}
		c.out = append(c.out, ':')
		if _, err := c.value(m.start, depth+1); err != nil {
			return 0, err
		}
	}
	c.out = append(c.out, '}')
	return i, nil
}

// str writes the string starting at c.raw[i] (or, given quoted, that one)
// and returns the index after it in c.raw. A string that encoding/json would
// write as it is (no escapes, valid UTF-8 without U+2028 and U+2029) is
// copied; any other is decoded and encoded again.
func (c *canonicalizer) str(i int, quoted ...byte) (int, error) {
	end := 0
	if quoted == nil {
		end = SkipString(c.raw, i)
		quoted = c.raw[i:end]
	}
	if len(quoted) < 2 || quoted[len(quoted)-1] != '"' {
		return 0, errNotCanonicalizable
	}
	if plainString(quoted[1 : len(quoted)-1]) {
		c.out = append(c.out, quoted...)
		return end, nil
	}
	if dec, ok := AppendUnescaped(c.scratch[:0], quoted[1:len(quoted)-1]); ok && quoted[0] == '"' {
		c.scratch = dec
		c.out = AppendString(c.out, dec)
		return end, nil
	}
	s, err := unquote(quoted)
	if err != nil {
		return 0, err
	}
	enc, err := Marshal(s)
	if err != nil {
		return 0, err
	}
	c.out = append(c.out, enc...)
	return end, nil
}

// plainString reports whether encoding/json writes the JSON string contents
// b back exactly as they are.
func plainString(b []byte) bool {
	ascii := true
	for _, ch := range b {
		if ch < 0x20 || ch == '\\' || ch == '"' {
			return false
		}
		if ch >= utf8.RuneSelf {
			ascii = false
		}
	}
	if ascii {
		return true
	}
	return utf8.Valid(b) && !bytes.Contains(b, []byte("\u2028")) && !bytes.Contains(b, []byte("\u2029"))
}

// unquoteBytes decodes a JSON string (quotes included) as encoding/json
// does; a string without escapes comes back as a sub-slice of quoted.
func unquoteBytes(quoted []byte) ([]byte, error) {
	if len(quoted) >= 2 && plainString(quoted[1:len(quoted)-1]) && quoted[0] == '"' && quoted[len(quoted)-1] == '"' {
		return quoted[1 : len(quoted)-1], nil
	}
	s, err := unquote(quoted)
	return []byte(s), err
}

// unquote decodes a JSON string (quotes included) as encoding/json does.
func unquote(quoted []byte) (string, error) {
	if len(quoted) >= 2 && quoted[0] == '"' && quoted[len(quoted)-1] == '"' && bytes.IndexByte(quoted, '\\') < 0 && utf8.Valid(quoted) {
		ok := true
		for _, ch := range quoted[1 : len(quoted)-1] {
			if ch < 0x20 || ch == '"' {
				ok = false
				break
			}
		}
		if ok {
			return string(quoted[1 : len(quoted)-1]), nil
		}
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", errNotCanonicalizable
	}
	return s, nil
}
