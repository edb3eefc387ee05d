package domain

import (
	"strings"
	"unicode/utf16"
)

// The formats of the contract's values: ids, timestamps, socket ids, the
// data content type, and lengths as JavaScript counts them.

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

// utf16Len counts s in UTF-16 code units, as JavaScript's length does.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}
