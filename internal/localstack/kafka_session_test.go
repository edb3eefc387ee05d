package localstack_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/roomcast/roomcast/internal/localstack"
)

// TestKafkaMemberDeadBeforeItsJoinAnswerExpires: members that died while
// their JoinGroup waited (killed processes) are expired one session timeout
// after the join completes, as Kafka schedules every member's heartbeat
// expiration when a join completes (onCompleteJoin). Upstream kfake started
// a member's session only if its answer could still be handed to its
// connection, so a dead member could stay in the group until the
// pending-sync timer dropped it a whole rebalance timeout later. (Whether
// upstream noticed the closed connection was a coin toss, a select between
// a buffered channel and the connection's end: hence several dead members.)
// See third_party/kfake/PATCHES.md.
func TestKafkaMemberDeadBeforeItsJoinAnswerExpires(t *testing.T) {
	t.Parallel()
	k := startKafka(t, localstack.KafkaConfig{})
	const (
		group     = "dead-joiner-group"
		session   = 6 * time.Second // the broker's minimum
		rebalance = time.Minute
		giveUp    = 40 * time.Second // well below the rebalance timeout
		deadN     = 8
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	live := newGroupMember(t, k, group, session, rebalance)
	resp, err := live.join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.sync(ctx, resp.Generation, true); err != nil {
		t.Fatal(err)
	}

	// More members join and wait for the live one to rejoin; they die
	// (their connections close) before the join completes.
	var dead []*groupMember
	var joining sync.WaitGroup
	for range deadN {
		m := newGroupMember(t, k, group, session, rebalance)
		dead = append(dead, m)
		joining.Go(func() { _, _ = m.join(ctx) })
		live.waitState(ctx, "PreparingRebalance", len(dead)+1)
	}
	for _, m := range dead {
		m.die()
	}
	joining.Wait()
	// The broker learns of a closed connection when its read of the next
	// request fails; this pause lets it (were it too short, the test could
	// only miss the upstream behaviour, never fail on the patched).
	time.Sleep(500 * time.Millisecond)

	// The live member rejoins: the join completes with all of them, the
	// live one leads and syncs, the group is stable.
	resp, err = live.join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.sync(ctx, resp.Generation, true); err != nil {
		t.Fatal(err)
	}
	if _, ids := live.describe(ctx); len(ids) != deadN+1 {
		t.Fatalf("members after the join: %v, want the live one and %d dead ones", ids, deadN)
	}
	joined := time.Now()

	// The live member heartbeats while the dead ones are expired.
	lastBeat := time.Time{}
	for {
		if time.Since(lastBeat) >= time.Second {
			if err := live.heartbeat(ctx, resp.Generation); err != nil && !errors.Is(err, kerr.RebalanceInProgress) {
				t.Fatalf("heartbeat: %v", err)
			}
			lastBeat = time.Now()
		}
		_, ids := live.describe(ctx)
		left := 0
		for _, m := range dead {
			if slices.Contains(ids, m.id) {
				left++
			}
		}
		if left == 0 {
			if !slices.Contains(ids, live.id) {
				t.Fatalf("members %v lack the live one (%s)", ids, live.id)
			}
			break
		}
		if time.Since(joined) > giveUp {
			t.Fatalf("%d of the %d members that died before their JoinGroup was answered are still in the group %v after the join (session %v, rebalance timeout %v)",
				left, deadN, giveUp, session, rebalance)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the dead members were expired %v after the join completed (session %v)", time.Since(joined).Round(time.Millisecond), session)
}

// TestKafkaMemberWaitingInRebalanceIsNotExpired: a member waiting in its
// JoinGroup satisfies its heartbeats, however long the rebalance takes, as
// in Kafka (MemberMetadata.hasSatisfiedHeartbeat). Upstream kfake expired it
// one session after its last heartbeat and left its JoinGroup unanswered,
// so the client waited for its own timeout (Sarama: 30 s, then "i/o
// timeout") and joined again as a new member. See third_party/kfake/PATCHES.md.
func TestKafkaMemberWaitingInRebalanceIsNotExpired(t *testing.T) {
	t.Parallel()
	k := startKafka(t, localstack.KafkaConfig{})
	const (
		group     = "waiting-member-group"
		session   = 6 * time.Second
		rebalance = 15 * time.Second // a rebalance outlasting the session
		giveUp    = 40 * time.Second
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// silent and waiting form a stable group; silent then goes quiet with a
	// long session, so that the next rebalance lasts its whole timeout.
	silent := newGroupMember(t, k, group, 5*time.Minute, rebalance)
	resp, err := silent.join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := silent.sync(ctx, resp.Generation, true); err != nil {
		t.Fatal(err)
	}
	waiting := newGroupMember(t, k, group, session, rebalance)
	joinDone := make(chan error, 1)
	var wresp *kmsg.JoinGroupResponse
	go func() {
		var err error
		wresp, err = waiting.join(ctx)
		joinDone <- err
	}()
	silent.waitState(ctx, "PreparingRebalance", 2)
	resp, err = silent.join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-joinDone; err != nil {
		t.Fatal(err)
	}
	if err := silent.sync(ctx, resp.Generation, true); err != nil {
		t.Fatal(err)
	}
	if err := waiting.sync(ctx, wresp.Generation, false); err != nil {
		t.Fatal(err)
	}

	// A new member joins; the waiting member rejoins at once (as a client
	// told by its heartbeat) and waits for the silent one until the
	// rebalance timeout.
	began := time.Now()
	go func() { _, _ = newGroupMember(t, k, group, session, rebalance).join(ctx) }()
	waiting.waitState(ctx, "PreparingRebalance", 3)
	go func() {
		_, err := waiting.join(ctx)
		joinDone <- err
	}()
	select {
	case err := <-joinDone:
		if err != nil {
			t.Fatalf("the waiting member's rejoin: %v", err)
		}
	case <-time.After(giveUp):
		t.Fatalf("the waiting member's JoinGroup is unanswered %v after the rebalance began (session %v, rebalance timeout %v): "+
			"the broker expired it while it waited", giveUp, session, rebalance)
	}
	t.Logf("the waiting member's JoinGroup was answered %v after the rebalance began (session %v, rebalance timeout %v)",
		time.Since(began).Round(time.Millisecond), session, rebalance)
	if _, ids := waiting.describe(ctx); slices.Contains(ids, silent.id) || !slices.Contains(ids, waiting.id) {
		t.Errorf("members %v after the rebalance, want the waiting one (%s) and not the silent one", ids, waiting.id)
	}
}
