package config_test

import (
	"strings"
	"testing"

	"github.com/roomcast/roomcast/config"
)

func TestTerminateOnLeaveIsOffUnlessSetTrue(t *testing.T) {
	for value, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true, " true ": true} {
		cfg, err := config.Load(func(name string) string {
			if name == "PUSHER_TERMINATE_ON_LEAVE" {
				return value
			}
			return ""
		})
		if err != nil {
			t.Errorf("PUSHER_TERMINATE_ON_LEAVE=%q: %v", value, err)
			continue
		}
		if cfg.TerminateOnLeave != want {
			t.Errorf("PUSHER_TERMINATE_ON_LEAVE=%q: TerminateOnLeave = %v, want %v", value, cfg.TerminateOnLeave, want)
		}
	}
}

func TestTerminateOnLeaveRefusesANonBoolean(t *testing.T) {
	_, err := config.Load(func(name string) string {
		if name == "PUSHER_TERMINATE_ON_LEAVE" {
			return "yes"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), `PUSHER_TERMINATE_ON_LEAVE: "yes" is not true or false`) {
		t.Errorf("Load = %v, want an error naming PUSHER_TERMINATE_ON_LEAVE and its value", err)
	}
}
