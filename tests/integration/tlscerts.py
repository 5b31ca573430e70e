"""Test certificates made with the openssl command line tool (stdlib only).

    make_certs(directory) -> Certs
        Writes EC P-256 PEM files into `directory` and returns their paths:
        .ca / .ca_key          a test CA
        .cert / .key           a server certificate it signed for localhost and 127.0.0.1
                               (subjectAltName DNS:localhost, IP:127.0.0.1)
        .wrong_name / .wrong_name_key
                               signed by the same CA for wrong.example only
        .other_ca              an unrelated CA
        .other_cert / .other_key
                               a server certificate for localhost and 127.0.0.1 signed by
                               other_ca
"""

import os
import subprocess
from types import SimpleNamespace

__all__ = ["make_certs"]


def _openssl(directory, *args):
    subprocess.run(["openssl"] + list(args), cwd=directory, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _ca(directory, name):
    _openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "30", "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".pem")


def _leaf(directory, name, ca, san):
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % san)
    cn = san.split(",")[0].split(":", 1)[1]
    _openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr")
    _openssl(directory, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", name + ".pem")


def make_certs(directory):
    _ca(directory, "ca")
    _ca(directory, "other_ca")
    _leaf(directory, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    _leaf(directory, "wrong_name", "ca", "DNS:wrong.example")
    _leaf(directory, "other_server", "other_ca", "DNS:localhost,IP:127.0.0.1")
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    return SimpleNamespace(dir=directory, ca=p("ca.pem"), ca_key=p("ca.key"), cert=p("server.pem"),
                           key=p("server.key"), wrong_name=p("wrong_name.pem"), wrong_name_key=p("wrong_name.key"),
                           other_ca=p("other_ca.pem"), other_cert=p("other_server.pem"),
                           other_key=p("other_server.key"))
