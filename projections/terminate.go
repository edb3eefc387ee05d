package projections

import "github.com/roomcast/roomcast/domain"

// TerminateConnectionsOnLeave makes a member.left that removes a member owe,
// besides its user-left event, a call that closes the user's Pusher
// connections (PUSHER_TERMINATE_ON_LEAVE): its outbox row is written in the
// same transaction as the leave, so it is as durable, and retried, as every
// delivery. Access itself ends with the room_members row the same
// transaction deletes (the next channel authorization fails); the call
// closes what was authorized before. Replays never owe it: a leave replayed
// from history is not a user leaving now. Call it before projecting.
func (p *Projector) TerminateConnectionsOnLeave(on bool) { p.terminateOnLeave = on }

// oweTermination adds the terminate delivery an applied member.left owes,
// right after its user-left delivery, when the projector is asked to (see
// TerminateConnectionsOnLeave).
func (b *batch) oweTermination(env domain.Envelope) {
	if !b.terminateOnLeave {
		return
	}
	if e, ok := env.Event.(domain.MemberLeft); ok {
		b.owed = append(b.owed, domain.TerminateDelivery(env.ID, e.UserID))
	}
}
