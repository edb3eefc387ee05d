package projections

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// copyWriter encodes rows in COPY's binary format (the format pgx's CopyFrom
// sends), for the few column types batches write: text, bigint, integer,
// boolean, timestamptz, jsonb and text[].
//
// Why not pgx's CopyFrom, which does the same: it takes each row as a []any
// and looks up an encode plan for every value through a map; boxing the
// values and that lookup cost CPU and allocations for every value of every
// row, for columns whose types never change. The encodings below are pgx's own, byte for byte
// (TestCopyWriterEncodesAsPgx holds them to it), and every batch test goes
// through them into a real Postgres.
type copyWriter struct {
	buf     []byte
	columns int // fields per row
	fields  int // fields written in the current row
	rows    int
	err     error
}

// copyHeader starts every binary COPY stream: signature, flags, no extension.
const copyHeader = "PGCOPY\n\377\r\n\000\000\000\000\000\000\000\000\000"

// Postgres's epoch for timestamps is 2000-01-01 UTC.
const microsecFromUnixEpochToY2K = 946_684_800 * 1_000_000

const oidText = 25

// copyBuffers keeps encoding buffers from batch to batch; one that grew past
// maxKeptCopyBuffer (a huge batch) is left to the collector.
var copyBuffers = sync.Pool{New: func() any { return &copyWriter{} }}

const maxKeptCopyBuffer = 8 << 20

func newCopyWriter(columns int) *copyWriter {
	w := copyBuffers.Get().(*copyWriter)
	*w = copyWriter{buf: append(w.buf[:0], copyHeader...), columns: columns}
	return w
}

func (w *copyWriter) release() {
	if cap(w.buf) <= maxKeptCopyBuffer {
		copyBuffers.Put(w)
	}
}

// row starts a row; every row must then get exactly one value per column.
func (w *copyWriter) row() {
	w.endRow()
	w.buf = binary.BigEndian.AppendUint16(w.buf, uint16(w.columns))
	w.rows++
}

func (w *copyWriter) endRow() {
	if w.rows > 0 && w.fields != w.columns && w.err == nil {
		w.err = fmt.Errorf("COPY row %d has %d values for %d columns", w.rows, w.fields, w.columns)
	}
	w.fields = 0
}

// finish ends the stream and returns it.
func (w *copyWriter) finish() ([]byte, error) {
	w.endRow()
	w.buf = binary.BigEndian.AppendUint16(w.buf, 0xffff) // -1: no more rows
	return w.buf, w.err
}

func (w *copyWriter) field(n int) {
	w.fields++
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(int32(n)))
}

func (w *copyWriter) null() { w.field(-1) }

func (w *copyWriter) text(s string) {
	w.field(len(s))
	w.buf = append(w.buf, s...)
}

// optText writes "" as NULL.
func (w *copyWriter) optText(s string) {
	if s == "" {
		w.null()
		return
	}
	w.text(s)
}

func (w *copyWriter) textPtr(s *string) {
	if s == nil {
		w.null()
		return
	}
	w.text(*s)
}

func (w *copyWriter) int8(v int64) {
	w.field(8)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(v))
}

func (w *copyWriter) int4(v int32) {
	w.field(4)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(v))
}

func (w *copyWriter) bool(v bool) {
	w.field(1)
	if v {
		w.buf = append(w.buf, 1)
	} else {
		w.buf = append(w.buf, 0)
	}
}

// timestamptz writes t to the microsecond, truncated, as pgx does.
func (w *copyWriter) timestamptz(t time.Time) {
	us := t.Unix()*1_000_000 + int64(t.Nanosecond())/1000
	w.int8(us - microsecFromUnixEpochToY2K)
}

func (w *copyWriter) timePtr(t *time.Time) {
	if t == nil {
		w.null()
		return
	}
	w.timestamptz(*t)
}

// jsonb writes a JSON text (already valid) in jsonb's binary input format:
// version 1, then the text.
func (w *copyWriter) jsonb(s string) {
	w.field(1 + len(s))
	w.buf = append(w.buf, 1)
	w.buf = append(w.buf, s...)
}

// textArray writes xs as a one-dimensional text[] (lower bound 1; an empty
// one too, as pgx writes it).
func (w *copyWriter) textArray(xs []string) {
	n := 20 + 4*len(xs)
	for _, x := range xs {
		n += len(x)
	}
	if n > math.MaxInt32 {
		w.err = fmt.Errorf("COPY row %d: array of %d bytes", w.rows, n)
	}
	w.field(n)
	w.buf = binary.BigEndian.AppendUint32(w.buf, 1) // dimensions
	w.buf = binary.BigEndian.AppendUint32(w.buf, 0) // no nulls
	w.buf = binary.BigEndian.AppendUint32(w.buf, oidText)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(xs)))
	w.buf = binary.BigEndian.AppendUint32(w.buf, 1) // lower bound
	for _, x := range xs {
		w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(x)))
		w.buf = append(w.buf, x...)
	}
}

// copySQL is the statement pgx's CopyFrom sends for the same table and columns.
func copySQL(table string, columns []string) string {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	return fmt.Sprintf("copy %s ( %s ) from stdin binary;", pgx.Identifier{table}.Sanitize(), strings.Join(quoted, ", "))
}
