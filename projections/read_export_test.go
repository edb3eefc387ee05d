package projections

// Exported for the external tests: the statements of the read side whose
// plans the tests check.
var FeedSQL = feedSQL

const UserNotificationsSQL = userNotificationsSQL
