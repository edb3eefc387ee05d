package projections

import (
	"database/sql/driver"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// TextArray is a Postgres text[] value. GORM would expand a plain []string
// argument into a list of placeholders; this type is passed as one value.
type TextArray []string

// Value writes the array literal, every element quoted.
func (a TextArray) Value() (driver.Value, error) {
	if a == nil {
		return nil, nil
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quoteElem(s))
	}
	b.WriteByte('}')
	return b.String(), nil
}

// Scan reads a text[] (in Postgres' text format) with pgx's own parser.
func (a *TextArray) Scan(src any) error {
	var out []string
	if err := pgtype.NewMap().SQLScanner(&out).Scan(src); err != nil {
		return fmt.Errorf("scan text[]: %w", err)
	}
	*a = out
	return nil
}

// arrayElemEscaper escapes a value inside a quoted array element.
var arrayElemEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func quoteElem(s string) string { return `"` + arrayElemEscaper.Replace(s) + `"` }
