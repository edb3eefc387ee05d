package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// redactedContent stands in for the text a delete erased from a stored
// create or edit, so that the event passes validation again when history is
// replayed. The message it belongs to ends deleted (content ”), so the
// placeholder never survives a replay of complete history.
const redactedContent = "[redacted]"

// historyEnvelope rebuilds the CloudEvents envelope of a stored event and
// validates it as if it had just arrived. An event that no longer passes
// validation returns the error (a *domain.ValidationError).
func historyEnvelope(id, typ, source string, subject *string, data []byte) (domain.Envelope, error) {
	raw := eventJSON(id, typ, source, subject, data)
	env, err := storedDecoder.Decode(raw)
	if err == nil {
		return env, nil
	}
	var ve *domain.ValidationError
	if (typ == string(domain.TypeMessageCreated) || typ == string(domain.TypeMessageEdited)) &&
		errors.As(err, &ve) && ve.Field == "data.content" && errors.Is(err, domain.ErrEmpty) {
		// Redacted by a delete: the stored fact keeps no text.
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) == nil {
			m["content"], _ = json.Marshal(redactedContent)
			if patched, merr := json.Marshal(m); merr == nil {
				if env, derr := storedDecoder.Decode(eventJSON(id, typ, source, subject, patched)); derr == nil {
					return env, nil
				}
			}
		}
	}
	return domain.Envelope{}, err
}

// storedDecoder validates stored events without a size limit: Postgres
// prints jsonb with a space after every colon and comma, so an event that
// arrived within the limit may come back larger.
var storedDecoder = domain.Decoder{MaxValueBytes: -1}

func eventJSON(id, typ, source string, subject *string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(id)+len(typ)+len(source)+96)
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, source)
	if subject != nil {
		b = append(b, `,"subject":`...)
		b = appendJSONString(b, *subject)
	}
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // a string always marshals
		panic(err)
	}
	return append(b, q...)
}

// TypeCounts counts what a replay did with the events of one type.
type TypeCounts struct {
	Read int64 `json:"read"`
	// Applied changed the read models (a room event got a seq, a notification was recorded).
	Applied int64 `json:"applied"`
	// Unchanged was recorded (or replayed) without effect: a second join, an edit of a deleted message.
	Unchanged int64 `json:"unchanged"`
	// Duplicates were already stored (Kafka replay): skipped.
	Duplicates int64 `json:"duplicates"`
	// Invalid no longer pass validation: reported and skipped.
	Invalid int64 `json:"invalid"`
	// Rejected are valid but cannot apply (an edit of an unknown message): reported and skipped.
	Rejected int64 `json:"rejected"`
}

func (c *TypeCounts) add(o TypeCounts) {
	c.Read += o.Read
	c.Applied += o.Applied
	c.Unchanged += o.Unchanged
	c.Duplicates += o.Duplicates
	c.Invalid += o.Invalid
	c.Rejected += o.Rejected
}

// Problem is one event a replay skipped, with why.
type Problem struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	Reason  string `json:"reason"`
}

// maxProblems bounds the problems a summary lists; all are counted and logged.
const maxProblems = 100

// Counts is the running tally of a replay: per event type, and the first
// problems met.
type Counts struct {
	ByType   map[string]*TypeCounts `json:"by_type"`
	Problems []Problem              `json:"problems,omitempty"`
	// SeqMismatches counts room events whose replayed seq differs from the
	// one live projection recorded (the rules changed since, or history was
	// projected out of order); clients saw the recorded ones.
	SeqMismatches int64 `json:"seq_mismatches,omitempty"`
}

// Of returns the counts of one event type, created on first use.
func (c *Counts) Of(typ string) *TypeCounts { return c.of(typ) }

func (c *Counts) of(typ string) *TypeCounts {
	if c.ByType == nil {
		c.ByType = map[string]*TypeCounts{}
	}
	t := c.ByType[typ]
	if t == nil {
		t = &TypeCounts{}
		c.ByType[typ] = t
	}
	return t
}

func (c *Counts) problem(p Problem) {
	if len(c.Problems) < maxProblems {
		c.Problems = append(c.Problems, p)
	}
}

// Total sums the counts of every type.
func (c Counts) Total() TypeCounts {
	var t TypeCounts
	for _, v := range c.ByType {
		t.add(*v)
	}
	return t
}

// Types lists the event types counted, sorted.
func (c Counts) Types() []string {
	out := make([]string, 0, len(c.ByType))
	for k := range c.ByType {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TableChange is how a replay changes (or, in a dry run, would change) one table.
type TableChange struct {
	Table   string `json:"table"`
	Added   int64  `json:"added"`
	Changed int64  `json:"changed"`
	Removed int64  `json:"removed"`
}

func (t TableChange) String() string {
	return fmt.Sprintf("%s: %d added, %d changed, %d removed", t.Table, t.Added, t.Changed, t.Removed)
}

// StoredIDs reports which of ids are in the events table.
func StoredIDs(ctx context.Context, db *gorm.DB, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	var found []string
	if err := scanRaw(db.WithContext(ctx).Raw(`SELECT id FROM events WHERE id = ANY(?::text[])`, arr(ids)), &found); err != nil {
		return nil, fmt.Errorf("look up stored events: %w", err)
	}
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}
