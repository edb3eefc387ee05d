package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"

	"github.com/roomcast/roomcast/domain"
)

// pgNumericReference says whether PostgreSQL 15's numeric takes the JSON
// number n, and how long it prints it, computed another way than the
// decoder: with arbitrary-precision integers throughout.
func pgNumericReference(n string) (printed int64, ok bool) {
	mant, exp, _ := strings.Cut(strings.ToLower(n), "e")
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	e := new(big.Int)
	if exp != "" {
		e.SetString(strings.TrimPrefix(exp, "+"), 10)
	}
	limit := big.NewInt(1<<30 - 1)
	if e.CmpAbs(limit) >= 0 {
		return 0, false
	}
	// scale = max(len(frac) - e, 0); the first significant digit's power of ten.
	scale := new(big.Int).Sub(big.NewInt(int64(len(frac))), e)
	if scale.Sign() < 0 {
		scale.SetInt64(0)
	}
	if scale.Cmp(big.NewInt(16383)) > 0 {
		return 0, false
	}
	all := intPart + frac
	zeros := len(all) - len(strings.TrimLeft(all, "0"))
	printed = 1 // the integer part: "0" or its digits
	if scale.Sign() > 0 {
		printed += 1 + scale.Int64()
	}
	if zeros == len(all) { // zero: printed as 0 (and its scale), never -0
		return printed, true
	}
	// all[0] stands at 10^(len(intPart)-1); the first significant digit
	// comes after the leading zeros.
	first := big.NewInt(int64(len(intPart) - 1 - zeros))
	first.Add(first, e)
	if first.Cmp(big.NewInt(131071)) > 0 {
		return 0, false
	}
	if first.Sign() > 0 {
		printed += first.Int64()
	}
	if neg {
		printed++
	}
	return printed, true
}

func TestPGNumericReference(t *testing.T) {
	for n, want := range map[string]int64{"0": 1, "-0": 1, "1": 1, "-1.50": 5, "0.001": 5, "1e3": 4, "1.5e-2": 5, "0e-3": 5, "123": 3} {
		if got, ok := pgNumericReference(n); !ok || got != want {
			t.Errorf("reference(%s) = %d, %v; want %d", n, got, ok, want)
		}
	}
}

// storableFacts walks data (valid JSON) and returns its nesting depth, the
// numbers Postgres would refuse, and how long Postgres prints the others.
func storableFacts(t testing.TB, data []byte) (depth int, refused []string, printed int64) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	d := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return depth, refused, printed
		}
		if err != nil {
			t.Fatalf("data %q: %v", data, err)
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				d++
				depth = max(depth, d)
			} else {
				d--
			}
		case json.Number:
			if p, ok := pgNumericReference(string(v)); ok {
				printed += p
			} else {
				refused = append(refused, string(v))
			}
		}
	}
}

// checkStorable asserts that an accepted event is one Postgres stores, and
// that a refusal for a reason of Postgres' is one the reference agrees with.
func checkStorable(t *testing.T, value []byte, env domain.Envelope, err error) {
	t.Helper()
	if err != nil {
		var ve *domain.ValidationError
		if !errors.As(err, &ve) {
			return
		}
		switch {
		case strings.Contains(ve.Reason, "Postgres' numeric"):
			if _, refused, _ := storableFacts(t, topData(t, value)); len(refused) == 0 {
				t.Errorf("%v, but every number of data fits numeric", err)
			}
		case strings.HasPrefix(ve.Reason, "nested "):
			if depth, _, _ := storableFacts(t, topData(t, value)); depth <= domain.MaxDataDepth {
				t.Errorf("%v, but data nests %d levels", err, depth)
			}
		}
		return
	}
	if len(value) > domain.DefaultMaxValueBytes {
		t.Errorf("accepted a value of %d bytes", len(value))
	}
	for name, s := range map[string]string{"id": env.ID, "source": env.Source, "subject": env.Subject} {
		if strings.ContainsFunc(s, unicode.IsControl) {
			t.Errorf("%s = %q holds a control character", name, s)
		}
		if n := len(utf16.Encode([]rune(s))); n > domain.MaxSourceLength {
			t.Errorf("%s has %d UTF-16 units", name, n)
		}
	}
	depth, refused, printed := storableFacts(t, env.Data)
	if depth > domain.MaxDataDepth || len(refused) > 0 || printed > domain.DefaultMaxValueBytes {
		t.Errorf("accepted data nested %d deep, with numbers %q that Postgres refuses, printing the others as %d characters", depth, refused, printed)
	}
}

func topData(t testing.TB, value []byte) []byte {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(value, &top); err != nil {
		t.Fatalf("refused for data, but the value is not an object: %v", err)
	}
	return top["data"]
}
