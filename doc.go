// Package collabsync keeps a research computing centre's systems in step
// with its LDAP directory. The program is cmd/collabsync; this package
// holds no code, only the test that keeps the layers in order
// (layers_test.go, as README's layout table draws them).
package collabsync
