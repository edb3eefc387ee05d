package domain

import (
	"strconv"
	"unicode/utf8"
)

// The limits of the contract. Lengths are counted in UTF-16 code units, as the
// front end's JavaScript counts them.
const (
	MaxIDLength               = 128  // room, user and message ids
	MaxEventIDLength          = 256  // the CloudEvents id
	MaxContentLength          = 4000 // content of a message
	MaxNameLength             = 200  // authorName, userName (roomcast's own cap)
	MaxAvatarLength           = 2048 // authorAvatar, userAvatar (roomcast's own cap)
	MaxRecipients             = 1000 // userIds, roomIds of a notification, as sent
	MaxNotificationIDLength   = 128
	MaxNotificationTypeLength = 64
	MaxNotificationTitle      = 200
	MaxNotificationBody       = 2000
	MaxNotificationURL        = 2048
	MaxSocketIDLength         = 64 // roomcast's own cap on a Pusher socket id
)

// Limits that keep an event storable and its cost bounded: what Postgres
// refuses to store is refused here first, with a reason, so that it is
// dead-lettered as invalid instead of failing a projection transaction.
const (
	// DefaultMaxValueBytes is the largest Kafka message value Decode
	// accepts (256 KiB; EVENT_MAX_BYTES sets another through Decoder). The
	// contract's fields fit within it (the largest event, a notification
	// to 1,000 recipients of 128-character ids with every text at its
	// limit and escaped, takes under 200 KB), and memory is budgeted by
	// it: every message in flight may be this large.
	DefaultMaxValueBytes = 256 << 10
	// MaxSourceLength bounds the CloudEvents source and subject, in UTF-16
	// units as the other lengths (roomcast's own cap: both are stored with
	// every event).
	MaxSourceLength = 1024
	// MaxDataDepth is how deeply data may nest objects and arrays (data
	// itself is level 1). Postgres parses jsonb recursively and refuses a
	// value nested deeper than its stack allows (SQLSTATE 54001, "stack
	// depth limit exceeded"): PostgreSQL 15 on x86-64 takes about 13,000
	// levels with the default max_stack_depth (2MB) and about 620 with the
	// smallest it can be set to (100kB); 512 is below both.
	MaxDataDepth = 512
)

// Decoder decodes event values as Decode does, with its own limits.
//
//	env, err := domain.Decoder{MaxValueBytes: 1 << 20}.Decode(value)
type Decoder struct {
	// MaxValueBytes is the largest value accepted, in bytes: 0 means
	// DefaultMaxValueBytes, a negative number no limit (events read back
	// from the event store, which Postgres prints with spaces added and
	// which passed the limit when they arrived). It also bounds how many
	// characters the numbers of data take once Postgres prints them.
	MaxValueBytes int
}

func (d Decoder) maxValueBytes() int {
	if d.MaxValueBytes == 0 {
		return DefaultMaxValueBytes
	}
	return d.MaxValueBytes
}

// valueTooLarge is the violation of a value over max bytes (max > 0).
func valueTooLarge(n, max int) error {
	return &ValidationError{Field: "value", Kind: ErrTooLong,
		Reason: strconv.Itoa(n) + " bytes, at most " + strconv.Itoa(max)}
}

// checkEnvelopeText checks the envelope's texts that are stored with every
// event beyond the contract's table: source and subject of at most
// MaxSourceLength characters, and no control character in id, source or
// subject (they are identifiers; a newline in one would split a log line or
// a header).
func (r *reader) checkEnvelopeText(id, source, subject string) {
	if *r.err != nil {
		return
	}
	r.checkLength("source", source, 1, MaxSourceLength, ErrTooLong)
	r.checkLength("subject", subject, 0, MaxSourceLength, ErrTooLong)
	for _, f := range [...]struct{ name, s string }{{"id", id}, {"source", source}, {"subject", subject}} {
		if c, ok := controlChar(f.s); ok && *r.err == nil {
			r.fail(f.name, "", ErrInvalidField, "contains a control character (U+"+hex4Upper(c)+")")
		}
	}
}

// controlChar finds a control character in s: U+0000-U+001F, U+007F-U+009F
// (Unicode's Cc).
func controlChar(s string) (rune, bool) {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b < 0x20 || b == 0x7f:
			return rune(b), true
		case b == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f:
			c, _ := utf8.DecodeRuneInString(s[i:])
			return c, true
		}
	}
	return 0, false
}

func hex4Upper(c rune) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[c>>12&0xf], digits[c>>8&0xf], digits[c>>4&0xf], digits[c&0xf]})
}
