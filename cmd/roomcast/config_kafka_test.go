package main

import (
	"strings"
	"testing"

	"github.com/roomcast/roomcast/config"
)

// The consumer's in-flight bounds and group membership: one partition
// stays below the whole (its head may never complete), bytes are bounded,
// and each bad value is reported with its variable.
func TestConfigKafkaInFlightAndMembership(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		perPart int
		total   int
		bytes   int64
		id      string
		wantErr string // the variable the error names
	}{
		{name: "defaults", perPart: 2500, total: 5000, bytes: 32 << 20},
		{name: "a lower total lowers the default per partition", env: map[string]string{"KAFKA_MAX_IN_FLIGHT": "300"}, perPart: 150, total: 300, bytes: 32 << 20},
		{name: "per partition set", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_PER_PARTITION": "1"}, perPart: 1, total: 5000, bytes: 32 << 20},
		{name: "per partition as much as the total", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_PER_PARTITION": "5000"}, wantErr: "KAFKA_MAX_IN_FLIGHT_PER_PARTITION"},
		{name: "total of one", env: map[string]string{"KAFKA_MAX_IN_FLIGHT": "1"}, wantErr: "KAFKA_MAX_IN_FLIGHT:"},
		{name: "bytes in MiB", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_BYTES": "16MiB"}, perPart: 2500, total: 5000, bytes: 16 << 20},
		{name: "bytes in KiB", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_BYTES": "512 KiB"}, perPart: 2500, total: 5000, bytes: 512 << 10},
		{name: "bytes as a count", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_BYTES": "1048576"}, perPart: 2500, total: 5000, bytes: 1 << 20},
		{name: "bytes unreadable", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_BYTES": "lots"}, wantErr: "KAFKA_MAX_IN_FLIGHT_BYTES"},
		{name: "bytes zero", env: map[string]string{"KAFKA_MAX_IN_FLIGHT_BYTES": "0"}, wantErr: "KAFKA_MAX_IN_FLIGHT_BYTES"},
		{name: "instance id", env: map[string]string{"KAFKA_GROUP_INSTANCE_ID": "roomcast-0"}, perPart: 2500, total: 5000, bytes: 32 << 20, id: "roomcast-0"},
		{name: "instance id with a slash", env: map[string]string{"KAFKA_GROUP_INSTANCE_ID": "ns/roomcast-0"}, wantErr: "KAFKA_GROUP_INSTANCE_ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := validRunEnv(t)
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := config.Load(envOf(env), config.Kafka, config.Database, config.Pusher, config.HTTP)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.InFlightPerPartition != tc.perPart || cfg.InFlight != tc.total || cfg.InFlightBytes != tc.bytes || cfg.GroupInstanceID != tc.id {
				t.Errorf("per partition %d, total %d, bytes %d, instance id %q; want %d, %d, %d, %q",
					cfg.InFlightPerPartition, cfg.InFlight, cfg.InFlightBytes, cfg.GroupInstanceID, tc.perPart, tc.total, tc.bytes, tc.id)
			}
			if cfg.InFlightPerPartition >= cfg.InFlight {
				t.Errorf("one partition may hold %d of %d slots: all of them", cfg.InFlightPerPartition, cfg.InFlight)
			}
		})
	}
}
