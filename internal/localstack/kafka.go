package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaConfig configures StartKafka; the zero value starts an in-memory broker on a free port of 127.0.0.1.
type KafkaConfig struct {
	// Addr is the host:port to listen on: "127.0.0.1:0" (or "") picks a
	// free port, dev uses "localhost:9092". An empty host means 127.0.0.1.
	// The broker advertises the address it actually bound (an IP), which
	// is what Brokers returns.
	Addr string
	// DataDir, if set, persists topics, records and committed offsets
	// there so they survive restarts; "" keeps everything in memory.
	DataDir string
	// Topics are created at start with the given partition counts (a
	// count below 1 means kfake's default of 10). Topics that already
	// exist (from DataDir) are kept as they are.
	Topics map[string]int32
	// AllowAutoTopicCreation lets metadata requests create unknown topics
	// (as a real broker with auto.create.topics.enable=true does, with 10
	// partitions); off by default so a misspelt topic fails loudly.
	AllowAutoTopicCreation bool
	// Logger receives broker events (kfake's info/debug go to Debug); nil discards them.
	Logger *slog.Logger
}

// Kafka is an in-process, single-broker Kafka cluster (franz-go's kfake) speaking the real protocol.
type Kafka struct {
	cluster *kfake.Cluster
	brokers []string
	log     *slog.Logger
}

// StartKafka starts the broker, creates cfg.Topics and returns once it accepts connections.
func StartKafka(cfg KafkaConfig) (*Kafka, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kafka")

	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("start kafka: address %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("start kafka: address %q: bad port", addr)
	}

	opts := []kfake.Opt{
		// Ports also fixes the number of brokers: one. Port 0 lets the kernel choose.
		kfake.Ports(port),
		// kfake always listens on 127.0.0.1:port; honour the configured host.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.WithLogger(kfakeLogger{log}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.AllowAutoTopicCreation {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kafka on %s: %w", addr, err)
	}
	k := &Kafka{cluster: cluster, brokers: cluster.ListenAddrs(), log: log}

	// CreateTopic rather than kfake.SeedTopics: seed topics are ignored when
	// DataDir already holds state, so topics added to the config later would
	// never be created.
	names := make([]string, 0, len(cfg.Topics))
	for name := range cfg.Topics {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		want := cfg.Topics[name]
		err := cluster.CreateTopic(name, want, nil)
		switch {
		case err == nil:
		case errors.Is(err, kerr.TopicAlreadyExists):
			if have := int32(len(cluster.PartitionInfos(name))); want > 0 && have != want {
				log.Warn("existing topic has a different partition count than configured; keeping it", "topic", name, "partitions", have, "configured", want)
			}
		default:
			cluster.Close()
			return nil, fmt.Errorf("start kafka: create topic %q with %d partitions: %w", name, want, err)
		}
	}
	log.Info("kafka started", "brokers", k.brokers, "data_dir", cfg.DataDir, "topics", len(names))
	return k, nil
}

// Brokers returns the bootstrap addresses (host:port) clients should connect to.
func (k *Kafka) Brokers() []string { return slices.Clone(k.brokers) }

// Cluster returns the underlying kfake cluster, for tests that inject faults or inspect groups.
func (k *Kafka) Cluster() *kfake.Cluster { return k.cluster }

// Close stops the broker, persisting state to DataDir if one is configured; later calls do nothing.
func (k *Kafka) Close() {
	k.cluster.Close()
	k.log.Debug("kafka stopped", "brokers", k.brokers)
}

// kfakeLogger forwards kfake's log lines to slog. kfake logs every request at
// info level, so info and debug go to slog's Debug.
type kfakeLogger struct{ log *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo, kfake.LogLevelDebug:
		sl = slog.LevelDebug
	default:
		return
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, sl) {
		return
	}
	l.log.Log(ctx, sl, fmt.Sprintf(format, args...))
}
