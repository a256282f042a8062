// Package enroll decides who may boot what, and holds the credentials that
// decision rests on: a profile's enrolment policy applied to a machine
// (Decide: open, approve, login), single-use boot tokens bound to the
// client address that fetched the script (Tokens), users' passwords as
// argon2id hashes (HashPassword, CheckPassword, CheckUserName), and rate
// limits per client address and per user (Limiter).
//
// A MAC address, an IP address or a hostname names a machine; it proves
// nothing. Nothing here hands out a secret because a request names a
// machine: under approve, a machine is admitted by an administrator and
// only from the address it was approved at; under login, by the password
// of a user, whose disk it then gets.
//
// It keeps its state in package server/state and needs no root.
package enroll
