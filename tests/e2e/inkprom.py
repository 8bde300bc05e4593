"""HTTP and Prometheus-text helpers for the tests of engine.http (/metrics,
/health, /ready), parsed with Debian's python3-prometheus-client."""
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def get(port, path):
    """(status, body), or (None, "") when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError):
        return None, ""


def scrape(port):
    """{family name: family} from /metrics, or None."""
    st, text = get(port, "/metrics")
    if st != 200:
        return None
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, fam, sample, **labels):
    f = fams.get(fam)
    if not f:
        return None
    for s in f.samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None
