package projections

// Exported for the external tests: the outbox statements whose plans
// TestOutboxStatementsProbeThePrimaryKey checks, and arr to bind their ids.
const (
	MarkDeliveredSQL     = markDeliveredSQL
	MarkDeliveredKeepSQL = markDeliveredKeepSQL
	RecordFailureSQL     = recordFailureSQL
	RedactDeliveriesSQL  = redactDeliveriesSQL
)

func IDArray(ids []int64) any { return arr(ids) }
