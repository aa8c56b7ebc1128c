// Command httpget is a plain Go HTTP client for tests to run in an agent:
// it GETs its URL as any Go program does (the proxy from the environment,
// the roots of the system or of $SSL_CERT_FILE) and prints the status
// line, then the body. With -issuer it prints instead the issuer of the
// server's certificate as the client received it, without verifying it.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	issuer := flag.Bool("issuer", false, "print the issuer of the server's certificate, unverified")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: httpget [-issuer] URL")
		os.Exit(2)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *issuer {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if *issuer {
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
			fmt.Fprintln(os.Stderr, "no TLS")
			os.Exit(1)
		}
		fmt.Println(resp.TLS.PeerCertificates[0].Issuer.CommonName)
		return
	}
	fmt.Println(resp.Status)
	_, _ = io.Copy(os.Stdout, resp.Body)
}
