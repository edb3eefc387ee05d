// Package localstack starts real infrastructure for development and tests:
// a throwaway PostgreSQL cluster run from the installed server binaries, and
// an in-process Kafka broker (franz-go's kfake) that speaks the Kafka protocol.
//
// It is used by `roomcast-dev` and by the test helpers in internal/testsupport,
// so it must not import the testing package.
package localstack
