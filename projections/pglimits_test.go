package projections_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// The decoder's rules that mirror Postgres (domain/pgnumeric.go,
// domain.MaxDataDepth) are held here to a real server, on both sides of
// each boundary: what the decoder accepts, Postgres stores as jsonb, and
// what it refuses for Postgres' sake, Postgres refuses.

func pgConn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testsupport.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// pgJSONB stores data as jsonb and returns how Postgres prints the member
// n, or the SQLSTATE it refuses data with.
func pgJSONB(t *testing.T, conn *pgx.Conn, data string) (printedN int, sqlstate string) {
	t.Helper()
	var n *int
	err := conn.QueryRow(t.Context(), `SELECT length(($1::text::jsonb)->>'n')`, data).Scan(&n)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
		return 0, pgErr.Code
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == nil {
		return 0, ""
	}
	return *n, ""
}

// withNumber is a valid event whose data holds n as its member "n".
func withNumber(t *testing.T, n string) (value []byte, data string) {
	t.Helper()
	env := chattest.MemberLeft("r1", "u1").Envelope(t)
	data = strings.TrimSuffix(string(env.Data), "}") + `,"n":` + n + "}"
	value = []byte(`{"specversion":"1.0","id":"e-1","source":"/t","type":"chat.member.left","data":` + data + "}")
	return value, data
}

func checkNumberAsPostgres(t *testing.T, conn *pgx.Conn, n string) {
	t.Helper()
	shown := n
	if len(shown) > 40 {
		shown = shown[:20] + "..." + shown[len(shown)-12:]
	}
	value, data := withNumber(t, n)
	printed, sqlstate := pgJSONB(t, conn, data)
	// Without a size limit, only Postgres' range counts.
	_, err := domain.Decoder{MaxValueBytes: -1}.Decode(value)
	switch {
	case sqlstate == "" && err != nil:
		t.Errorf("%s: Postgres stores it, the decoder refuses it: %v", shown, err)
	case sqlstate != "" && err == nil:
		t.Errorf("%s: the decoder accepts it, Postgres refuses it (SQLSTATE %s)", shown, sqlstate)
	case sqlstate != "" && sqlstate != "22003":
		t.Errorf("%s: Postgres refuses it with SQLSTATE %s, not 22003", shown, sqlstate)
	case err != nil:
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != "data.n" || !strings.Contains(ve.Reason, "Postgres' numeric") {
			t.Errorf("%s: refused with %v, want a numeric reason on data.n", shown, err)
		}
	case printed > len(value):
		// Printed characters count against the size limit: the decoder
		// must count them as Postgres prints them.
		if _, err := (domain.Decoder{MaxValueBytes: printed}).Decode(value); err != nil {
			t.Errorf("%s prints as %d characters in Postgres; with that limit the decoder refuses it: %v", shown, printed, err)
		}
		_, err := domain.Decoder{MaxValueBytes: printed - 1}.Decode(value)
		if want := fmt.Sprintf("numbers Postgres prints as %d characters, at most %d", printed, printed-1); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s prints as %d characters in Postgres; with a limit one below, the decoder says %v, want %q", shown, printed, err, want)
		}
	}
}

func TestDecoderNumbersAsPostgres(t *testing.T) {
	conn := pgConn(t)
	zeros := func(n int) string { return strings.Repeat("0", n) }
	for _, pair := range [][2]string{ // the last accepted, the first refused
		{"1e131071", "1e131072"},
		{"-1e131071", "-1e131072"},
		{"9.99e131071", "10e131071"},
		{"1E+131071", "1E+131072"},
		{"0.00001e131076", "0.00001e131077"},
		{"1" + zeros(131071), "1" + zeros(131072)},
		{"1e-16383", "1e-16384"},
		{"1.5e-16382", "1.5e-16383"},
		{"123e-16383", "123e-16384"},
		{"0e-16383", "0e-16384"},
		{"1." + zeros(16383), "1." + zeros(16384)},
		{"0." + zeros(16382) + "1", "0." + zeros(16383) + "1"},
		{"0e1073741822", "0e1073741823"},
		{"0e+01073741822", "0e-1073741823"},
		{"1.5e-0016382", "1e99999999999999999999"},
	} {
		checkNumberAsPostgres(t, conn, pair[0])
		checkNumberAsPostgres(t, conn, pair[1])
	}
	for _, n := range []string{"0", "-0", "-0.0", "1", "-1.50", "0.001", "12.5e3", "1e999", "-1e-997", "0e-999", "-12.345e-400", "7.25E+1200"} {
		checkNumberAsPostgres(t, conn, n)
	}
	// Around the boundaries at random: mantissas of a few digits, with a
	// point anywhere, exponents near where the rules change.
	rng := rand.New(rand.NewPCG(15, 15))
	for range 400 {
		digits := strconv.Itoa(rng.IntN(100000))
		if rng.IntN(4) == 0 {
			digits = "0"
		}
		mant := digits
		if p := rng.IntN(len(digits) + 3); p < len(digits) {
			mant = digits[:p] + "." + digits[p:]
			if p == 0 {
				mant = "0" + mant
			}
		} else if p > len(digits) {
			mant = digits + "." + zeros(rng.IntN(4)) + strconv.Itoa(rng.IntN(10))
		}
		if rng.IntN(2) == 0 {
			mant = "-" + mant
		}
		base := []int{131071, -16383, 0, 1073741822}[rng.IntN(4)]
		checkNumberAsPostgres(t, conn, mant+"e"+strconv.Itoa(base+rng.IntN(13)-6))
	}
}

// MaxDataDepth is safe whatever max_stack_depth Postgres runs with: at the
// smallest setting it accepts (100kB), it still parses data nested
// MaxDataDepth deep, as arrays and as objects, while it refuses far less
// deep values than its default allows.
func TestDataDepthAsPostgres(t *testing.T) {
	conn := pgConn(t)
	if _, err := conn.Exec(t.Context(), `SET max_stack_depth = '100kB'`); err != nil {
		t.Fatal(err)
	}
	nest := func(depth int, arrays bool) string { // data nested depth levels, data being 1
		inner := depth - 1
		if arrays {
			return `{"n":` + strings.Repeat("[", inner) + strings.Repeat("]", inner) + "}"
		}
		return `{"n":` + strings.Repeat(`{"a":`, inner-1) + "{}" + strings.Repeat("}", inner-1) + "}"
	}
	for _, arrays := range []bool{true, false} {
		if _, sqlstate := pgJSONB(t, conn, nest(domain.MaxDataDepth, arrays)); sqlstate != "" {
			t.Errorf("arrays %v: data nested %d deep refused with SQLSTATE %s at max_stack_depth 100kB", arrays, domain.MaxDataDepth, sqlstate)
		}
		if _, sqlstate := pgJSONB(t, conn, nest(2000, arrays)); sqlstate != "54001" {
			t.Errorf("arrays %v: data nested 2000 deep at max_stack_depth 100kB: SQLSTATE %q, want 54001 (the test no longer probes Postgres' limit)", arrays, sqlstate)
		}
	}
}
