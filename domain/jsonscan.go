package domain

import (
	"bytes"
	"encoding/json"
)

// splitObject returns the members of raw, a JSON object already known to be
// valid JSON (json.Valid), as json.Unmarshal into a map[string]json.RawMessage
// would: keys unescaped, values as their bytes (sub-slices of raw, not
// copies), the last of duplicate keys winning. It walks raw once and does not
// validate again: a third of Decode's time went into encoding/json checking
// and decoding the same bytes twice (the envelope, then its data). ok is
// false when raw is not an object.
func splitObject(raw []byte) (members map[string]json.RawMessage, ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, false
	}
	members = make(map[string]json.RawMessage, 8)
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return members, true
	}
	for i < len(raw) {
		// "key"
		end := skipString(raw, i)
		key := raw[i+1 : end-1]
		var k string
		if bytes.IndexByte(key, '\\') >= 0 {
			if err := json.Unmarshal(raw[i:end], &k); err != nil {
				return nil, false
			}
		} else {
			k = string(key)
		}
		i = skipSpace(raw, end)
		i = skipSpace(raw, i+1) // ':'
		vend := skipValue(raw, i)
		members[k] = raw[i:vend:vend]
		i = skipSpace(raw, vend)
		if i >= len(raw) || raw[i] == '}' {
			return members, true
		}
		i = skipSpace(raw, i+1) // ','
	}
	return members, true
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) {
		switch raw[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just after the string starting at raw[i] ('"').
func skipString(raw []byte, i int) int {
	for i++; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(raw)
}

// skipValue returns the index just after the value starting at raw[i].
func skipValue(raw []byte, i int) int {
	if i >= len(raw) {
		return i
	}
	switch raw[i] {
	case '"':
		return skipString(raw, i)
	case '{', '[':
		depth := 0
		for i < len(raw) {
			switch raw[i] {
			case '"':
				i = skipString(raw, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(raw) {
			switch raw[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
			i++
		}
		return i
	}
}
