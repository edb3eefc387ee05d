package projections_test

import "testing"

// Generic plans made while tables are small turn into full scans as they
// grow, so every connection plans each execution with its parameters.
func TestConnectionsUseCustomPlans(t *testing.T) {
	f := newFixture(t)
	var mode string
	if err := f.db.Raw(`SHOW plan_cache_mode`).Scan(&mode).Error; err != nil {
		t.Fatal(err)
	}
	if mode != "force_custom_plan" {
		t.Errorf("plan_cache_mode = %q, want force_custom_plan", mode)
	}
}
