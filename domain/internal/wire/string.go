package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Unescape decodes raw, a valid JSON string (quotes included) holding
// escapes, as json.Unmarshal does. ok is false when raw is not a JSON string.
func Unescape(raw []byte) (s string, ok bool) {
	if dec, ok := AppendUnescaped(make([]byte, 0, len(raw)-2), raw[1:len(raw)-1]); ok && raw[len(raw)-1] == '"' {
		// dec is new and never written again: the string can share it.
		return unsafe.String(unsafe.SliceData(dec), len(dec)), true
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// AppendUnescaped appends the decoded contents of a JSON string (the bytes
// between its quotes) to dst, as json.Unmarshal decodes them. ok is false,
// and dst must be dropped, when b is not valid UTF-8, holds a raw control
// character or quote, a malformed escape or a \u escape of a surrogate that
// is not a valid pair: encoding/json decides those.
func AppendUnescaped(dst, b []byte) (_ []byte, ok bool) {
	if !utf8.Valid(b) {
		return dst, false
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			if c < 0x20 || c == '"' {
				return dst, false
			}
			start := i
			for i < len(b) && b[i] != '\\' && b[i] >= 0x20 && b[i] != '"' {
				i++
			}
			dst = append(dst, b[start:i]...)
			continue
		}
		if i+1 >= len(b) {
			return dst, false
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hexRune(b, i+2)
			if r < 0 {
				return dst, false
			}
			if utf16.IsSurrogate(r) {
				// Only a high half followed by an escaped low half.
				if i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
					return dst, false
				}
				r = utf16.DecodeRune(r, hexRune(b, i+8))
				if r == utf8.RuneError {
					return dst, false
				}
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default:
			return dst, false
		}
		i += 2
	}
	return dst, true
}

// hexRune returns the value of the four hex digits at b[at:], or -1.
func hexRune(b []byte, at int) rune {
	if at+4 > len(b) {
		return -1
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// RefusedEscape finds, in valid JSON, a \u0000 escape or a \u escape of an
// unpaired UTF-16 surrogate (encoding/json would turn it into U+FFFD,
// Postgres jsonb refuses it). It returns the escape as written (\u0000 for
// NUL), or "" when there is none.
func RefusedEscape(raw []byte) string {
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\\')
		if j < 0 || i+j+1 >= len(raw) {
			return ""
		}
		i += j
		if raw[i+1] != 'u' {
			i += 2 // the escaped character may be a backslash
			continue
		}
		switch c := hex4(raw, i+2); {
		case c == 0:
			return `\u0000`
		case utf16.IsSurrogate(c):
			if !bytes.HasPrefix(raw[i+6:], []byte(`\u`)) || utf16.DecodeRune(c, hex4(raw, i+8)) == utf8.RuneError {
				return string(raw[i : i+6])
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
