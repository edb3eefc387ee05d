package wire

import "unicode/utf8"

// JSON strings with escapes, decoded and encoded without encoding/json.
//
// Go producers write "<", ">" and "&" as \u003c, \u003e and \u0026 (json.Marshal
// escapes HTML by default), so most chat messages arrive with escapes. Handing
// each such string to json.Unmarshal (and, for the stored canonical data, to
// an Encoder again) took ~3% of `roomcast run`'s CPU under a backlog.
// AppendUnescaped and AppendString do the common cases in one pass and report
// the rest (invalid UTF-8, unpaired surrogates, a malformed escape) as not
// handled, for the encoding/json path. FuzzCanonicalJSON, FuzzDecode and
// TestJSONStringFastPath hold them to encoding/json.

// AppendString appends s, valid UTF-8, as a JSON string the way Marshal
// writes one: encoding/json's escaping without HTML escapes.
func AppendString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
