package domain

import (
	"encoding/json"
	"strconv"

	"github.com/roomcast/roomcast/domain/internal/wire"
)

// Postgres stores data as jsonb, whose numbers are numeric. PostgreSQL 15's
// numeric input (numeric.c, set_var_from_str and make_result) refuses with
// SQLSTATE 22003 "value overflows numeric format":
//   - an exponent e with e >= INT_MAX/2 or e <= -INT_MAX/2, even on zero;
//   - a display scale (digits after the decimal point as written, trailing
//     zeros included, minus the exponent; at least 0) above 16383, even on
//     zero: 0e-16384 is refused;
//   - a nonzero value whose first significant digit is at 10^131072 or
//     higher: its weight, in base-10000 digits, must fit an int16.
//
// projections' TestDecoderNumbersAsPostgres holds these rules to a real
// server on both sides of each boundary.
const (
	pgExponentLimit = 1<<30 - 1 // INT_MAX/2: |e| must be below it
	pgMaxScale      = 16383     // NUMERIC_DSCALE_MAX
	pgMaxExponent   = 131071    // the highest power of ten of a digit: 4*(int16 max+1)-1
)

const (
	reasonNumberTooLarge = "number out of Postgres' numeric range (at most 131072 digits before the decimal point)"
	reasonExponent       = "number with an exponent out of Postgres' numeric range (-1073741823 < e < 1073741823)"
)

// pgNumeric checks tok, a valid JSON number, against Postgres' numeric. It
// returns how many characters Postgres prints it as (numeric_out: all the
// digits, no exponent), or why Postgres refuses it.
func pgNumeric(tok []byte) (printed int, reason string) {
	i := 0
	neg := tok[0] == '-'
	if neg {
		i++
	}
	intStart := i
	for i < len(tok) && isDigit(tok[i]) {
		i++
	}
	intDigits := i - intStart
	// The power of ten of the first significant digit, before the exponent;
	// zero has none. JSON allows no leading zero but "0" itself.
	first, nonzero := int64(intDigits-1), tok[intStart] != '0'
	frac := 0
	if i < len(tok) && tok[i] == '.' {
		i++
		start := i
		for i < len(tok) && isDigit(tok[i]) {
			if !nonzero && tok[i] != '0' {
				first, nonzero = int64(start-i-1), true
			}
			i++
		}
		frac = i - start
	}
	var exp int64
	if i < len(tok) { // 'e' or 'E'
		i++
		expNeg := tok[i] == '-'
		if tok[i] == '-' || tok[i] == '+' {
			i++
		}
		for ; i < len(tok); i++ {
			if exp < pgExponentLimit { // beyond, it is refused whatever it is
				exp = exp*10 + int64(tok[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if exp >= pgExponentLimit || exp <= -pgExponentLimit {
		return 0, reasonExponent
	}
	scale := max(int64(frac)-exp, 0)
	if scale > pgMaxScale {
		return 0, "number with " + strconv.FormatInt(scale, 10) + " digits after the decimal point, Postgres' numeric holds at most " + strconv.Itoa(pgMaxScale)
	}
	first += exp
	if nonzero && first > pgMaxExponent {
		return 0, reasonNumberTooLarge
	}
	// numeric_out: [-]digits[.scale digits]; zero is "0", never "-0".
	n := int64(1)
	if nonzero && first > 0 {
		n = first + 1
	}
	if scale > 0 {
		n += 1 + scale
	}
	if neg && nonzero {
		n++
	}
	return int(n), ""
}

// pgPrinted is pgNumeric for wire.SumNumbers: ok is false when Postgres
// refuses tok.
func pgPrinted(tok []byte) (printed int, ok bool) {
	printed, reason := pgNumeric(tok)
	return printed, reason == ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// checkData refuses what Postgres would refuse in data (valid JSON, an
// object), or what would make it too costly: nesting deeper than
// MaxDataDepth, a number numeric cannot hold, numbers that Postgres prints
// as more than maxPrinted characters together (maxPrinted < 0: no limit).
// depth and numbers are what wire.SplitObject noted of data; a number makes
// it walk data, which is rare in chat events (their fields are strings).
func (r *reader) checkData(data []byte, depth int, numbers bool, maxPrinted int) {
	switch {
	case *r.err != nil:
	case depth > MaxDataDepth:
		r.fail("data", "", ErrInvalidField, "nested "+strconv.Itoa(depth)+" levels deep, at most "+strconv.Itoa(MaxDataDepth))
	case numbers:
		printed, bad, badPath := wire.SumNumbers(data, pgPrinted)
		switch {
		case bad != nil:
			_, reason := pgNumeric(bad)
			r.fail(pathString(badPath), numberShown(bad), ErrInvalidField, reason)
		case maxPrinted >= 0 && printed > maxPrinted:
			r.fail("data", "", ErrInvalidField, "numbers Postgres prints as "+strconv.Itoa(printed)+
				" characters, at most "+strconv.Itoa(maxPrinted))
		}
	}
}

// pathString renders the place of a number in data: data.a[2].b, with keys
// that are not plain words quoted (data["a b"]), cut to a readable length.
func pathString(path []wire.PathStep) string {
	const maxPath = 120
	p := []byte("data")
	for _, s := range path {
		if len(p) > maxPath {
			return string(p) + "..."
		}
		if s.Key == nil {
			p = append(p, '[')
			p = strconv.AppendInt(p, int64(s.Index), 10)
			p = append(p, ']')
			continue
		}
		var key string
		if err := json.Unmarshal(s.Key, &key); err != nil { // cannot happen: raw is valid JSON
			key = string(s.Key)
		}
		if plainKey(key) {
			p = append(append(p, '.'), key...)
		} else {
			p = append(append(append(p, '['), quote(key)...), ']')
		}
	}
	return string(p)
}

func plainKey(k string) bool {
	if k == "" || len(k) > maxQuotedValue {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c == '_' || c == '-' || c == '$' || isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'z') {
			return false
		}
	}
	return true
}

// numberShown is a number as an error shows it: as written, cut to
// maxQuotedValue characters.
func numberShown(tok []byte) string {
	if len(tok) > maxQuotedValue {
		return string(tok[:maxQuotedValue]) + "..."
	}
	return string(tok)
}
