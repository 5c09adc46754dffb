"""Client threads that keep a gateway busy with one key's requests, for the tests that kill a
gateway or its database in the middle of a load."""

import threading

import httpx


def load(urls, token, answered, statuses, stop, *, sleep=0.02, per_url=3):
    """``per_url`` threads per URL posting to ``/echo`` until ``stop``, each request holding its
    quote for ``sleep`` seconds of inference: the request ids answered 200 go to ``answered``,
    every (status, Retry-After) to ``statuses``. A gateway that is gone is retried until stopped."""

    def loop(url, worker):
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            n = 0
            while not stop.is_set():
                n += 1
                request_id = f"{url.rsplit(':', 1)[1]}-{worker}-{n}"
                try:
                    r = client.post("/echo", json={"prompt": "abcd", "sleep": sleep}, headers={"X-Request-Id": request_id})
                except httpx.HTTPError:
                    if stop.wait(0.05):
                        return
                    continue
                statuses.append((r.status_code, r.headers.get("retry-after")))
                if r.status_code == 200:
                    answered.append(request_id)

    threads = [threading.Thread(target=loop, args=(url, w)) for url in urls for w in range(per_url)]
    for thread in threads:
        thread.start()
    return threads
