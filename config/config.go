// Package config reads roomcast's configuration from the environment and
// validates it, naming the setting in every error.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/publishers"
)

// Config is roomcast's whole configuration, read once from the environment.
type Config struct {
	Kafka         consumers.KafkaConfig
	Topic         string
	DLQTopic      string
	ConsumerGroup string
	InitialOffset string

	DatabaseURL      string
	DatabaseMaxConns int

	Pusher      publishers.ClientConfig
	MaxInFlight int           // PUSHER_MAX_IN_FLIGHT
	BatchEvents int           // PUSHER_BATCH_EVENTS
	Retention   time.Duration // DELIVERY_RETENTION

	TerminateOnLeave bool // PUSHER_TERMINATE_ON_LEAVE (terminate.go)

	InFlightPerPartition int     // KAFKA_MAX_IN_FLIGHT_PER_PARTITION
	InFlight             int     // KAFKA_MAX_IN_FLIGHT
	InFlightBytes        int64   // KAFKA_MAX_IN_FLIGHT_BYTES
	InFlightPerKey       int     // KAFKA_MAX_IN_FLIGHT_PER_KEY
	GroupInstanceID      string  // KAFKA_GROUP_INSTANCE_ID
	CatchUpRatio         float64 // KAFKA_CATCH_UP_RATIO (negative: off)
	BatchMax             int     // PROJECTION_BATCH_MAX
	BatchConcurrency     int     // PROJECTION_CONCURRENCY

	EventMaxBytes     int           // EVENT_MAX_BYTES
	StallAfter        time.Duration // STALL_AFTER
	ProjectionTimeout time.Duration // PROJECTION_TIMEOUT

	HTTPAddr        string
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
	LogFormat       string

	API APIConfig // roomcast api: API_ADDR and its identity settings
}

// Getenv looks up one environment variable ("" when unset).
type Getenv func(string) string

// Need names a part of the configuration a command uses: Load validates the
// settings of the parts asked for (the others keep their defaults).
type Need string

// The parts of the configuration a command may need.
const (
	Kafka    Need = "kafka"
	Database Need = "database"
	Pusher   Need = "pusher"
	HTTP     Need = "http"
	API      Need = "api" // roomcast api: API_ADDR, one identity mode, PUSHER_KEY and PUSHER_SECRET
)

// Load reads the configuration from env and reports every problem at
// once, each naming its variable. Secret values never appear in the errors.
func Load(env Getenv, needs ...Need) (Config, error) {
	var errs []error
	get := func(name, def string) string {
		if v := strings.TrimSpace(env(name)); v != "" {
			return v
		}
		return def
	}
	parseBool := func(name string, def bool) bool {
		v := get(name, "")
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not true or false", name, v))
		}
		return b
	}
	parseInt := func(name string, def int) int {
		v := get(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a positive whole number", name, v))
		}
		return n
	}
	parseDuration := func(name string, def time.Duration) time.Duration {
		v := get(name, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a positive duration such as 30s", name, v))
		}
		return d
	}

	c := Config{
		Topic:            get("KAFKA_TOPIC", "chat.events"),
		DLQTopic:         get("KAFKA_DLQ_TOPIC", "chat.events.dlq"),
		ConsumerGroup:    get("KAFKA_CONSUMER_GROUP", "roomcast"),
		InitialOffset:    get("KAFKA_INITIAL_OFFSET", "earliest"),
		DatabaseURL:      get("DATABASE_URL", ""),
		DatabaseMaxConns: parseInt("DATABASE_MAX_CONNS", 20),
		HTTPAddr:         get("HTTP_ADDR", ":8080"),
		ShutdownTimeout:  parseDuration("SHUTDOWN_TIMEOUT", 25*time.Second),
		LogFormat:        get("LOG_FORMAT", "json"),
	}
	if b := get("KAFKA_BROKERS", ""); b != "" {
		for _, s := range strings.Split(b, ",") {
			c.Kafka.Brokers = append(c.Kafka.Brokers, strings.TrimSpace(s))
		}
	}
	c.Kafka.SASLMechanism = strings.ToUpper(get("KAFKA_SASL_MECHANISM", ""))
	c.Kafka.SASLUsername = get("KAFKA_SASL_USERNAME", "")
	c.Kafka.SASLPassword = env("KAFKA_SASL_PASSWORD")
	c.Kafka.TLS = parseBool("KAFKA_TLS", false)
	allowInsecureSASL := parseBool("KAFKA_ALLOW_INSECURE_SASL", false)
	c.Pusher = publishers.ClientConfig{
		AppID:   get("PUSHER_APP_ID", ""),
		Key:     get("PUSHER_KEY", ""),
		Secret:  env("PUSHER_SECRET"),
		Cluster: get("PUSHER_CLUSTER", ""),
		Host:    get("PUSHER_HOST", ""),
		UseTLS:  parseBool("PUSHER_USE_TLS", true),
	}
	allowInsecurePusher := parseBool("PUSHER_ALLOW_INSECURE", false)
	c.MaxInFlight = parseInt("PUSHER_MAX_IN_FLIGHT", 128)
	c.BatchEvents = parseInt("PUSHER_BATCH_EVENTS", 10)
	if c.BatchEvents > 10 {
		errs = append(errs, fmt.Errorf("PUSHER_BATCH_EVENTS: %d is more than Pusher's 10 events per batch", c.BatchEvents))
	}
	c.Pusher.Timeout = parseDuration("PUSHER_TIMEOUT", 10*time.Second)
	c.Pusher.MaxConns = c.MaxInFlight
	c.TerminateOnLeave = terminateOnLeave(env, &errs)
	// 0 (the default): delivered rows are deleted as Pusher accepts them.
	if v := get("DELIVERY_RETENTION", ""); v != "0" {
		c.Retention = parseDuration("DELIVERY_RETENTION", 0)
	}
	c.InFlight = parseInt("KAFKA_MAX_IN_FLIGHT", 5000)
	// Below KAFKA_MAX_IN_FLIGHT: a partition whose head message does not
	// complete holds what it read behind it, and must leave the other
	// partitions room. Unset, it follows a lower KAFKA_MAX_IN_FLIGHT.
	c.InFlightPerPartition = parseInt("KAFKA_MAX_IN_FLIGHT_PER_PARTITION", max(1, min(2500, c.InFlight/2)))
	if c.InFlight > 0 && c.InFlightPerPartition >= c.InFlight {
		if get("KAFKA_MAX_IN_FLIGHT_PER_PARTITION", "") == "" {
			errs = append(errs, fmt.Errorf("KAFKA_MAX_IN_FLIGHT: %d leaves no room: at least 2 (one partition may hold at most KAFKA_MAX_IN_FLIGHT_PER_PARTITION, below it)", c.InFlight))
		} else {
			errs = append(errs, fmt.Errorf("KAFKA_MAX_IN_FLIGHT_PER_PARTITION: %d must be below KAFKA_MAX_IN_FLIGHT (%d), so that a partition whose head message does not complete leaves the others room",
				c.InFlightPerPartition, c.InFlight))
		}
	}
	c.InFlightBytes = consumers.DefaultMaxInFlightBytes
	if v := get("KAFKA_MAX_IN_FLIGHT_BYTES", ""); v != "" {
		n, err := ParseByteSize(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_MAX_IN_FLIGHT_BYTES: %w", err))
		}
		c.InFlightBytes = n
	}
	c.GroupInstanceID = get("KAFKA_GROUP_INSTANCE_ID", "")
	if id := c.GroupInstanceID; id != "" && !validGroupInstanceID(id) {
		errs = append(errs, fmt.Errorf("KAFKA_GROUP_INSTANCE_ID: %q is not 1-249 letters, digits, '.', '_' or '-' (a pod or host name)", id))
	}
	c.InFlightPerKey = parseInt("KAFKA_MAX_IN_FLIGHT_PER_KEY", 100)
	c.CatchUpRatio = 0.5
	if v := get("KAFKA_CATCH_UP_RATIO", ""); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil || r < 0 || r >= 1:
			errs = append(errs, fmt.Errorf("KAFKA_CATCH_UP_RATIO: %q is not a number from 0 (off) up to but not including 1", v))
		case r == 0:
			c.CatchUpRatio = -1 // off
		default:
			c.CatchUpRatio = r
		}
	}
	var apiErrs []error
	c.API, apiErrs = loadAPI(env)
	errs = append(errs, apiErrs...)
	c.BatchMax = parseInt("PROJECTION_BATCH_MAX", 1000)
	c.BatchConcurrency = parseInt("PROJECTION_CONCURRENCY", 2)
	c.EventMaxBytes = consumers.DefaultMaxEventBytes
	if v := get("EVENT_MAX_BYTES", ""); v != "" {
		n, err := ParseByteSize(v)
		if err != nil || n > MaxEventBytes {
			errs = append(errs, fmt.Errorf("EVENT_MAX_BYTES: %q is not a size from 1 byte to 64 MiB (a byte count, or N KiB or N MiB)", v))
		}
		c.EventMaxBytes = int(min(n, MaxEventBytes))
	}
	c.StallAfter = parseDuration("STALL_AFTER", 2*time.Minute)
	c.ProjectionTimeout = parseDuration("PROJECTION_TIMEOUT", consumers.DefaultProjectionTimeout)
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %q is not debug, info, warn or error", get("LOG_LEVEL", "")))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("LOG_FORMAT: %q is not json or text", c.LogFormat))
	}

	for _, need := range needs {
		switch need {
		case Kafka:
			errs = append(errs, c.Kafka.Validate())
			if c.Kafka.SASLMechanism == "PLAIN" && !c.Kafka.TLS && !allowInsecureSASL {
				errs = append(errs, errors.New("KAFKA_SASL_MECHANISM: PLAIN without KAFKA_TLS=true sends KAFKA_SASL_PASSWORD in clear text: "+
					"set KAFKA_TLS=true (or use SCRAM), or KAFKA_ALLOW_INSECURE_SASL=true to accept that"))
			}
			if c.InitialOffset != "earliest" && c.InitialOffset != "latest" {
				errs = append(errs, fmt.Errorf("KAFKA_INITIAL_OFFSET: %q is not earliest or latest", c.InitialOffset))
			}
			if c.Topic == c.DLQTopic {
				errs = append(errs, errors.New("KAFKA_DLQ_TOPIC: must differ from KAFKA_TOPIC"))
			}
		case Database:
			errs = append(errs, validateDatabaseURL(c.DatabaseURL))
		case Pusher:
			errs = append(errs, validatePusher(c.Pusher))
			// A Pusher-compatible server of your own (PUSHER_HOST) may speak
			// plain HTTP inside your network; Pusher's clusters are across
			// the internet, where the events would travel in clear text.
			if !c.Pusher.UseTLS && c.Pusher.Host == "" && c.Pusher.Cluster != "" && !allowInsecurePusher {
				errs = append(errs, errors.New("PUSHER_USE_TLS: false with PUSHER_CLUSTER (Pusher itself, no PUSHER_HOST) sends every event in clear text over the internet: "+
					"leave PUSHER_USE_TLS=true, or set PUSHER_ALLOW_INSECURE=true to accept that"))
			}
		case HTTP:
			if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
				errs = append(errs, fmt.Errorf("HTTP_ADDR: %q is not host:port (for example :8080)", c.HTTPAddr))
			}
		case API:
			errs = append(errs, c.API.validate(), validateAPIPusher(c.Pusher.Key, c.Pusher.Secret))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

// validGroupInstanceID is Kafka's rule for group.instance.id.
func validGroupInstanceID(id string) bool {
	if len(id) > 249 || id == "." || id == ".." {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func validateDatabaseURL(dsn string) error {
	if dsn == "" {
		return errors.New("DATABASE_URL: required (postgres://user:password@host:5432/db)")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, err := url.Parse(dsn); err != nil {
			// The URL may hold a password: name the problem, not the value.
			return errors.New("DATABASE_URL: not a valid URL")
		}
		return nil
	}
	if strings.Contains(dsn, "=") { // key=value form
		return nil
	}
	return errors.New("DATABASE_URL: not a postgres:// URL or key=value connection string")
}

func validatePusher(p publishers.ClientConfig) error {
	var errs []error
	if p.AppID == "" {
		errs = append(errs, errors.New("PUSHER_APP_ID: required"))
	}
	if p.Key == "" {
		errs = append(errs, errors.New("PUSHER_KEY: required"))
	}
	if p.Secret == "" {
		errs = append(errs, errors.New("PUSHER_SECRET: required"))
	}
	if p.Cluster == "" && p.Host == "" {
		errs = append(errs, errors.New("PUSHER_CLUSTER: required unless PUSHER_HOST is set"))
	}
	if p.Host != "" {
		if _, _, err := net.SplitHostPort(p.Host); err != nil {
			errs = append(errs, fmt.Errorf("PUSHER_HOST: %q is not host:port", p.Host))
		}
	}
	return errors.Join(errs...)
}

// MaxEventBytes bounds EVENT_MAX_BYTES: far above any chat event, below
// what one Kafka request may carry.
const MaxEventBytes = 64 << 20
