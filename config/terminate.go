package config

import (
	"fmt"
	"strconv"
	"strings"
)

// terminateOnLeaveVar makes a member leaving a room ask Pusher to terminate
// the user's connections (projections.Projector.TerminateConnectionsOnLeave).
const terminateOnLeaveVar = "PUSHER_TERMINATE_ON_LEAVE"

// terminateOnLeave reads PUSHER_TERMINATE_ON_LEAVE: a boolean, false when
// unset. A value that is not one is added to errs, naming the variable.
func terminateOnLeave(env Getenv, errs *[]error) bool {
	v := strings.TrimSpace(env(terminateOnLeaveVar))
	if v == "" {
		return false
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %q is not true or false", terminateOnLeaveVar, v))
	}
	return on
}
