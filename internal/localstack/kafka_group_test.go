package localstack_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/roomcast/roomcast/internal/localstack"
)

// TestKafkaRebalanceKeepsItsDeadline: once a group prepares a rebalance, the
// broker answers the members that rejoined within the rebalance timeout
// (the largest any member asked for) and drops the members that did not
// rejoin, however many joins keep arriving meanwhile. Apache Kafka sets that
// deadline once, when the group enters PreparingRebalance (its DelayedJoin);
// upstream kfake restarted it on every join, so a member that died without
// leaving stalled the group while others joined or rejoined, until its
// session expired (here 5 minutes) or the joins stopped. See
// third_party/kfake/PATCHES.md.
func TestKafkaRebalanceKeepsItsDeadline(t *testing.T) {
	t.Parallel()
	k := startKafka(t, localstack.KafkaConfig{})
	const (
		group     = "deadline-group"
		rebalance = 2 * time.Second
		// Long enough that the silent member's session cannot end the
		// rebalance within the test: only the deadline can.
		silentSession = 5 * time.Minute
		joinEvery     = 250 * time.Millisecond
		giveUp        = 60 * time.Second // 30 rebalance timeouts
	)
	ctx, cancel := context.WithTimeout(t.Context(), giveUp+30*time.Second)
	defer cancel()

	// A member joins alone and syncs: the group is stable with it, and then
	// it goes silent (a killed process: no heartbeat, no leave).
	silent := newGroupMember(t, k, group, silentSession, rebalance)
	resp, err := silent.join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := silent.sync(ctx, resp.Generation, true); err != nil {
		t.Fatalf("sync of the first member: %v", err)
	}
	firstGen := resp.Generation

	// A second member joins: the group prepares a rebalance and waits for
	// the silent member to rejoin, which it never does.
	type joined struct {
		resp *kmsg.JoinGroupResponse
		err  error
		at   time.Time
	}
	waiting := newGroupMember(t, k, group, 30*time.Second, rebalance)
	began := time.Now()
	done := make(chan joined, 1)
	go func() {
		r, err := waiting.join(ctx)
		done <- joined{r, err, time.Now()}
	}()

	// Meanwhile new members keep joining, each on its own connection, as
	// restarted processes (or clients re-sending a timed-out JoinGroup) do.
	joins := 0
	tick := time.NewTicker(joinEvery)
	defer tick.Stop()
	deadline := time.After(giveUp)
	var got joined
wait:
	for {
		select {
		case got = <-done:
			break wait
		case <-tick.C:
			joins++
			m := newGroupMember(t, k, group, 30*time.Second, rebalance)
			go func() { _, _ = m.join(ctx) }() // answered when the rebalance completes
		case <-deadline:
			t.Fatalf("the rebalance has not completed %v after it began, with %d members joining meanwhile "+
				"(rebalance timeout %v): the broker restarts its deadline on each join", giveUp, joins, rebalance)
		}
	}
	if got.err != nil {
		t.Fatalf("the waiting member's join failed %v after the rebalance began: %v", got.at.Sub(began).Round(time.Millisecond), got.err)
	}
	t.Logf("the rebalance completed %v after it began (rebalance timeout %v) while %d members joined",
		got.at.Sub(began).Round(time.Millisecond), rebalance, joins)
	if got.resp.Generation <= firstGen {
		t.Errorf("generation %d after the rebalance, want above %d", got.resp.Generation, firstGen)
	}
	// The member that never rejoined is out of the group.
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	desc, err := req.RequestWith(ctx, waiting.cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Groups) != 1 || desc.Groups[0].ErrorCode != 0 {
		t.Fatalf("describe group %s: %+v", group, desc.Groups)
	}
	var ids []string
	for _, m := range desc.Groups[0].Members {
		ids = append(ids, m.MemberID)
		if m.MemberID == silent.id {
			t.Errorf("the member that never rejoined is still in the group after the rebalance")
		}
	}
	if !slices.Contains(ids, waiting.id) {
		t.Errorf("members %v after the rebalance lack the member that was waiting (%s)", ids, waiting.id)
	}
}
