package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/config"
)

func TestConfigCORSOriginsUnsetMeansNone(t *testing.T) {
	c, err := config.Load(apiEnv(), config.API)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.CORSOrigins != nil {
		t.Errorf("CORSOrigins %q, want none", c.API.CORSOrigins)
	}
}

func TestConfigCORSOriginsReadsTheList(t *testing.T) {
	c, err := config.Load(apiEnv("API_CORS_ORIGINS", " https://app.example.com, http://localhost:5173,,https://[2001:db8::1]:8443 "), config.API)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://app.example.com", "http://localhost:5173", "https://[2001:db8::1]:8443"}
	if !reflect.DeepEqual(c.API.CORSOrigins, want) {
		t.Errorf("CORSOrigins %q, want %q", c.API.CORSOrigins, want)
	}
}

// TestConfigCORSOriginsRefusesWhatNoBrowserSends: the API compares the
// Origin header byte for byte, so an origin written otherwise than a
// browser sends it would never match; the error says how to write it.
// "*" is refused outright.
func TestConfigCORSOriginsRefusesWhatNoBrowserSends(t *testing.T) {
	for value, want := range map[string]string{
		"*":                               `API_CORS_ORIGINS: "*" is refused`,
		"https://app.example.com, *":      `API_CORS_ORIGINS: "*" is refused`,
		"app.example.com":                 `"app.example.com" is not an origin`,
		"null":                            `"null" is not an origin`,
		"ftp://app.example.com":           `"ftp://app.example.com" is not an origin`,
		"https://user@app.example.com":    `"https://user@app.example.com" is not an origin`,
		"https://app.example.com/":        `write "https://app.example.com"`,
		"https://app.example.com/chat":    `write "https://app.example.com"`,
		"https://App.Example.com":         `write "https://app.example.com"`,
		"https://app.example.com:443":     `write "https://app.example.com"`,
		"http://localhost:80":             `write "http://localhost"`,
		"https://app.example.com?x=1":     `write "https://app.example.com"`,
		"https://app.example.com#section": `write "https://app.example.com"`,
	} {
		_, err := config.Load(apiEnv("API_CORS_ORIGINS", value), config.API)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("API_CORS_ORIGINS=%q: %v, want an error containing %q", value, err, want)
		}
	}
}
