package projections

import "time"

// Exported for the external tests: the outbox statements whose plans
// TestOutboxStatementsProbeThePrimaryKey checks, and arr to bind their ids.
const (
	MarkDeliveredSQL     = markDeliveredSQL
	MarkDeliveredKeepSQL = markDeliveredKeepSQL
	RecordFailureSQL     = recordFailureSQL
	RedactDeliveriesSQL  = redactDeliveriesSQL
	PendingToRedactSQL   = pendingToRedactSQL
	PendingInRoomsSQL    = pendingInRoomsSQL
	OldestPendingSQL     = oldestPendingSQL
	PendingCountSQL      = pendingCountSQL
	NoSeqScanSQL         = noSeqScanSQL
)

func IDArray(ids []int64) any { return arr(ids) }

// SetLookUpFor sets how long p's batches look ids and created messages up
// after meeting a stored one (lookUpAfterStored); 0 keeps every batch
// optimistic.
func SetLookUpFor(p *Projector, d time.Duration) { p.lookUpFor = d }

// AfterSeqCheck makes a rebuild with opts call f after it compared the
// rooms' seqs without locks, before the swap compares them again.
func AfterSeqCheck(opts *RebuildOptions, f func()) { opts.afterSeqCheck = f }

// RoomsArgs binds pendingInRoomsSQL's arguments.
func RoomsArgs(rooms []string, after []int64, n []int32) []any {
	return []any{arr(rooms), arr(after), arr(n)}
}
