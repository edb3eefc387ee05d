package projections

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestCopyWriterEncodesAsPgx holds copyWriter to pgx's own binary encoding
// of the same values (what pgx's CopyFrom sent before), field by field.
func TestCopyWriterEncodesAsPgx(t *testing.T) {
	m := pgtype.NewMap()
	at := time.Date(2026, 11, 27, 8, 0, 0, 123_456_789, time.UTC)
	before2000 := time.Date(1969, 7, 20, 20, 17, 40, 999_999_999, time.FixedZone("x", -5*3600))
	avatar := "https://example.test/a.png"
	type field struct {
		oid   uint32
		value any // nil: NULL
		write func(w *copyWriter)
	}
	fields := []field{
		{pgtype.TextOID, "room-1", func(w *copyWriter) { w.text("room-1") }},
		{pgtype.TextOID, "", func(w *copyWriter) { w.text("") }},
		{pgtype.TextOID, "héllo ✓ \t\n", func(w *copyWriter) { w.text("héllo ✓ \t\n") }},
		{pgtype.TextOID, nil, func(w *copyWriter) { w.optText("") }},
		{pgtype.TextOID, "x", func(w *copyWriter) { w.optText("x") }},
		{pgtype.TextOID, avatar, func(w *copyWriter) { w.textPtr(&avatar) }},
		{pgtype.TextOID, nil, func(w *copyWriter) { w.textPtr(nil) }},
		{pgtype.Int8OID, int64(42), func(w *copyWriter) { w.int8(42) }},
		{pgtype.Int8OID, int64(-1 << 62), func(w *copyWriter) { w.int8(-1 << 62) }},
		{pgtype.Int4OID, int32(11), func(w *copyWriter) { w.int4(11) }},
		{pgtype.Int4OID, int32(-7), func(w *copyWriter) { w.int4(-7) }},
		{pgtype.BoolOID, true, func(w *copyWriter) { w.bool(true) }},
		{pgtype.BoolOID, false, func(w *copyWriter) { w.bool(false) }},
		{pgtype.TimestamptzOID, at, func(w *copyWriter) { w.timestamptz(at) }},
		{pgtype.TimestamptzOID, before2000, func(w *copyWriter) { w.timestamptz(before2000) }},
		{pgtype.TimestamptzOID, &at, func(w *copyWriter) { w.timePtr(&at) }},
		{pgtype.TimestamptzOID, nil, func(w *copyWriter) { w.timePtr(nil) }},
		{pgtype.JSONBOID, `{"a":[1,2.5,"é"],"b":null}`, func(w *copyWriter) { w.jsonb(`{"a":[1,2.5,"é"],"b":null}`) }},
		{pgtype.TextArrayOID, []string{"private-room-1", "", "private-user-ü"}, func(w *copyWriter) {
			w.textArray([]string{"private-room-1", "", "private-user-ü"})
		}},
		{pgtype.TextArrayOID, []string{}, func(w *copyWriter) { w.textArray(nil) }},
	}

	w := newCopyWriter(len(fields))
	want := []byte("PGCOPY\n\377\r\n\000")
	want = binary.BigEndian.AppendUint32(want, 0)
	want = binary.BigEndian.AppendUint32(want, 0)
	for row := 0; row < 2; row++ {
		w.row()
		want = binary.BigEndian.AppendUint16(want, uint16(len(fields)))
		for _, f := range fields {
			f.write(w)
			if f.value == nil {
				want = binary.BigEndian.AppendUint32(want, 0xffffffff)
				continue
			}
			enc, err := m.Encode(f.oid, pgtype.BinaryFormatCode, f.value, nil)
			if err != nil {
				t.Fatalf("pgx encode %T: %v", f.value, err)
			}
			want = binary.BigEndian.AppendUint32(want, uint32(len(enc)))
			want = append(want, enc...)
		}
	}
	want = binary.BigEndian.AppendUint16(want, 0xffff)
	got, err := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stream differs from pgx's encoding:\n got %x\nwant %x", got, want)
	}
	w.release()
}

// TestCopyWriterCountsValues: a row with a value too many or too few is an
// error, not a stream Postgres would misread.
func TestCopyWriterCountsValues(t *testing.T) {
	for _, n := range []int{1, 3} {
		w := newCopyWriter(2)
		w.row()
		for range n {
			w.text("x")
		}
		w.row()
		w.text("y")
		w.text("z")
		if _, err := w.finish(); err == nil || !strings.Contains(err.Error(), "COPY row 1 has") {
			t.Errorf("%d values for 2 columns: err = %v, want a count error", n, err)
		}
	}
	w := newCopyWriter(2)
	w.row()
	w.text("x")
	if _, err := w.finish(); err == nil {
		t.Error("last row short of a value: no error")
	}
}

func TestCopySQLIsPgxs(t *testing.T) {
	got := copySQL("events", []string{"id", "type"})
	if want := `copy "events" ( "id", "type" ) from stdin binary;`; got != want {
		t.Errorf("copySQL = %q, want %q", got, want)
	}
}
