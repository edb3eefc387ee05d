package alerts

import "time"

const m = time.Minute

// alertCases: for each alert, series that must make it fire (and not
// before its `for` has passed) and series that must not. Label sets carry
// what Prometheus adds when scraping (job, instance).
var alertCases = []alertCase{
	{"RoomcastAbsent", "no worker up", `
		up{job="roomcast",instance="a"} 1x5 0x30
	`, []at{{8 * m, false, nil}, {15 * m, true, nil}}},
	{"RoomcastAbsent", "a worker up", `
		up{job="roomcast",instance="a"} 0x5 1x30
		up{job="roomcast",instance="b"} 1x35
	`, []at{{20 * m, false, nil}}},

	// Events retried without end: the consumed counter stays flat, since it
	// counts each message once (when it counted retries, it rose and hid this).
	{"RoomcastConsumerStalled", "backlog, events retried, nothing consumed", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 1200x40
		roomcast_kafka_group_lag{job="roomcast",instance="b",topic="chat.events"} 1200x40
		roomcast_kafka_consumer_lag{job="roomcast",instance="a",topic="chat.events",partition="3"} 1200x40
		roomcast_events_consumed_total{job="roomcast",instance="a",type="chat.message.created"} 500x40
		roomcast_events_consumed_total{job="roomcast",instance="b",type="chat.message.created"} 700x40
	`, []at{{5 * m, false, nil}, {25 * m, true, nil}}},
	// No replica holds a partition: no per-partition lag series at all, the
	// group's lag still tells.
	{"RoomcastConsumerStalled", "backlog, no partition held", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 5000x40
		roomcast_events_consumed_total{job="roomcast",instance="a",type="chat.message.created"} 500x40
	`, []at{{25 * m, true, nil}}},
	{"RoomcastConsumerStalled", "backlog draining", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 50000-1000x40
		roomcast_events_consumed_total{job="roomcast",instance="a",type="chat.message.created"} 0+1000x40
	`, []at{{30 * m, false, nil}}},
	{"RoomcastConsumerStalled", "no backlog, no traffic", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 0x40
		roomcast_events_consumed_total{job="roomcast",instance="a",type="chat.message.created"} 500x40
	`, []at{{30 * m, false, nil}}},

	{"RoomcastStall", "a partition stalled", `
		roomcast_consumer_stalled{job="roomcast",instance="a",cause="partition"} 0x3 1x20
		roomcast_consumer_stalled{job="roomcast",instance="a",cause="retry"} 0x23
		roomcast_consumer_stalled{job="roomcast",instance="b",cause="partition"} 0x23
	`, []at{{4 * m, false, nil}, {10 * m, true, map[string]string{"cause": "partition", "severity": "critical"}}}},
	{"RoomcastStall", "a dead letter that cannot be published", `
		roomcast_consumer_stalled{job="roomcast",instance="a",cause="dead_letter"} 1x10
	`, []at{{5 * m, true, map[string]string{"cause": "dead_letter"}}}},
	{"RoomcastStall", "a stall that clears within its for", `
		roomcast_consumer_stalled{job="roomcast",instance="a",cause="retry"} 0x3 1 0x20
	`, []at{{4 * m, false, nil}, {10 * m, false, nil}}},
	{"RoomcastStall", "nothing stalled", `
		roomcast_consumer_stalled{job="roomcast",instance="a",cause="partition"} 0x20
		roomcast_consumer_stalled{job="roomcast",instance="a",cause="unassigned"} 0x20
	`, []at{{15 * m, false, nil}}},

	{"RoomcastPartitionsUnassigned", "lag and no partition held", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 5000x20
		roomcast_kafka_assigned_partitions{job="roomcast",instance="a",topic="chat.events"} 0x20
		roomcast_kafka_assigned_partitions{job="roomcast",instance="b",topic="chat.events"} 0x20
	`, []at{{3 * m, false, nil}, {10 * m, true, map[string]string{"topic": "chat.events"}}}},
	{"RoomcastPartitionsUnassigned", "partitions held", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 5000x20
		roomcast_kafka_assigned_partitions{job="roomcast",instance="a",topic="chat.events"} 6x20
		roomcast_kafka_assigned_partitions{job="roomcast",instance="b",topic="chat.events"} 0x20
	`, []at{{15 * m, false, nil}}},
	{"RoomcastPartitionsUnassigned", "no lag", `
		roomcast_kafka_group_lag{job="roomcast",instance="a",topic="chat.events"} 0x20
		roomcast_kafka_assigned_partitions{job="roomcast",instance="a",topic="chat.events"} 0x20
	`, []at{{15 * m, false, nil}}},

	{"RoomcastDeadLettersWaiting", "dead letters wait", `
		roomcast_dead_letters_waiting{job="roomcast",instance="a"} 0x2 1x20
	`, []at{{5 * m, false, nil}, {10 * m, true, nil}}},
	{"RoomcastDeadLettersWaiting", "published", `
		roomcast_dead_letters_waiting{job="roomcast",instance="a"} 0x2 3 0x20
	`, []at{{15 * m, false, nil}}},

	{"RoomcastConsumerLagHigh", "far behind", `
		roomcast_kafka_consumer_lag{job="roomcast",instance="a",topic="chat.events",partition="0"} 60000x30
		roomcast_kafka_consumer_lag{job="roomcast",instance="b",topic="chat.events",partition="1"} 60000x30
	`, []at{{10 * m, false, nil}, {20 * m, true, map[string]string{"topic": "chat.events"}}}},
	{"RoomcastConsumerLagHigh", "keeping up", `
		roomcast_kafka_consumer_lag{job="roomcast",instance="a",topic="chat.events",partition="0"} 2000x30
	`, []at{{25 * m, false, nil}}},

	{"RoomcastDeadLetters", "contract violations", `
		roomcast_events_dead_lettered_total{job="roomcast",instance="a",type="chat.message.created",reason="invalid"} 0x5 1x20
	`, []at{{4 * m, false, nil}, {8 * m, true, map[string]string{"reason": "invalid", "type": "chat.message.created"}}}},
	{"RoomcastDeadLetters", "none", `
		roomcast_events_dead_lettered_total{job="roomcast",instance="a",type="chat.message.created",reason="invalid"} 0x25
	`, []at{{20 * m, false, nil}}},

	{"RoomcastPusherErrors", "5xx", `
		roomcast_pusher_calls_total{job="roomcast",instance="a",endpoint="batch",status="200"} 0+90x30
		roomcast_pusher_calls_total{job="roomcast",instance="a",endpoint="batch",status="503"} 0+10x30
	`, []at{{5 * m, false, nil}, {25 * m, true, nil}}},
	{"RoomcastPusherErrors", "a few", `
		roomcast_pusher_calls_total{job="roomcast",instance="a",endpoint="batch",status="200"} 0+99x30
		roomcast_pusher_calls_total{job="roomcast",instance="a",endpoint="batch",status="503"} 0+1x30
	`, []at{{25 * m, false, nil}}},

	{"RoomcastDeliveriesDelayed", "old deliveries", `
		roomcast_deliveries_oldest_pending_seconds{job="roomcast",instance="a"} 0+60x20
	`, []at{{4 * m, false, nil}, {10 * m, true, nil}}},
	{"RoomcastDeliveriesDelayed", "fresh deliveries", `
		roomcast_deliveries_oldest_pending_seconds{job="roomcast",instance="a"} 1x20
	`, []at{{15 * m, false, nil}}},

	{"RoomcastDispatcherStalled", "Pusher down", `
		roomcast_dispatcher_stalled{job="roomcast",instance="a"} 0x2 1x20
	`, []at{{3 * m, false, nil}, {8 * m, true, nil}}},
	{"RoomcastDispatcherStalled", "delivering", `
		roomcast_dispatcher_stalled{job="roomcast",instance="a"} 0x20
	`, []at{{15 * m, false, nil}}},

	{"RoomcastDeliveriesParked", "parked", `
		roomcast_deliveries_parked{job="roomcast",instance="a"} 0x2 2x10
	`, []at{{1 * m, false, nil}, {5 * m, true, nil}}},
	{"RoomcastDeliveriesParked", "none parked", `
		roomcast_deliveries_parked{job="roomcast",instance="a"} 0x10
	`, []at{{8 * m, false, nil}}},

	{"RoomcastProjectionFailing", "Postgres refusing", `
		roomcast_projection_failures_total{job="roomcast",instance="a",type="chat.message.created"} 0+5x30
	`, []at{{5 * m, false, nil}, {20 * m, true, nil}}},
	{"RoomcastProjectionFailing", "a failure now and then", `
		roomcast_projection_failures_total{job="roomcast",instance="a",type="chat.message.created"} 0x5 1x30
	`, []at{{25 * m, false, nil}}},

	{"RoomcastEventIDConflicts", "an id reused", `
		roomcast_event_id_conflicts_total{job="roomcast",instance="a",type="chat.message.created"} 0x5 1x30
	`, []at{{3 * m, false, nil}, {10 * m, true, map[string]string{"type": "chat.message.created"}}}},
	{"RoomcastEventIDConflicts", "none", `
		roomcast_event_id_conflicts_total{job="roomcast",instance="a",type="chat.message.created"} 0x30
	`, []at{{25 * m, false, nil}}},

	{"RoomcastAPIAbsent", "no API pod up", `
		up{job="roomcast-api",instance="a"} 1x5 0x30
		up{job="roomcast",instance="w"} 1x35
	`, []at{{8 * m, false, nil}, {15 * m, true, nil}}},
	{"RoomcastAPIAbsent", "only the worker scraped", `
		up{job="roomcast",instance="w"} 1x20
	`, []at{{10 * m, true, nil}}},
	{"RoomcastAPIAbsent", "an API pod up", `
		up{job="roomcast-api",instance="a"} 0x5 1x30
		up{job="roomcast-api",instance="b"} 1x35
	`, []at{{20 * m, false, nil}}},

	// The route label is the pattern that matched (bounded).
	{"RoomcastAPIErrors", "the database refusing: one request in eleven 503", `
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="GET /rooms/{roomId}/events",status="200"} 0+600x40
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="GET /rooms/{roomId}/events",status="503"} 0+120x40
		roomcast_api_requests_total{job="roomcast-api",instance="b",route="POST /pusher/auth",status="200"} 0+600x40
	`, []at{{5 * m, false, nil}, {20 * m, true, nil}}},
	{"RoomcastAPIErrors", "one request in a hundred 500", `
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="POST /pusher/auth",status="200"} 0+6000x40
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="POST /pusher/auth",status="500"} 0+60x40
	`, []at{{30 * m, false, nil}}},
	{"RoomcastAPIErrors", "a few errors among few requests", `
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="GET /users/me/notifications",status="200"} 0+2x40
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="GET /users/me/notifications",status="503"} 0x5 3x35
	`, []at{{30 * m, false, nil}}},
	{"RoomcastAPIErrors", "refusals (4xx) and readiness 503s are not errors", `
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="POST /pusher/auth",status="200"} 0+60x40
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="POST /pusher/auth",status="403"} 0+600x40
		roomcast_api_requests_total{job="roomcast-api",instance="a",route="GET /readyz",status="503"} 0+600x40
	`, []at{{30 * m, false, nil}}},
}
