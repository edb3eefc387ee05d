// Package jsonstr decodes JSON strings in one pass, as encoding/json does,
// for the common cases, and leaves the others to encoding/json: roomcast's
// event decoder (domain) and the Pusher fake's batch parser share it.
package jsonstr

import (
	"unicode/utf16"
	"unicode/utf8"
)

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
