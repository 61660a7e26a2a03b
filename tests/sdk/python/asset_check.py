"""The official Python SDK (mux_python, pinned in requirements.txt) against OnAir, with only
the host and credentials changed. mux_python checks every enumerated value when it
deserialises an answer, so a field OnAir writes outside the hosted API's lists fails here
with a ValueError: that is an incompatibility of the server, to be fixed there.

Driven by crates/onair/tests/e2e_sdk.rs:

    ONAIR_URL=http://127.0.0.1:8080 TOKEN_ID=... TOKEN_SECRET=... python asset_check.py create
        creates a live stream whose broadcasts get a public playback ID; prints
        {"id", "stream_key"}
    ... python asset_check.py read LIVE_STREAM_ID
        reads the live stream's latest asset every way the SDK can (get, list by cursor,
        list by live stream, input info, playback ID, playback ID lookup); prints one JSON
        object of what it read
    ... python asset_check.py legacy
        creates a live stream with the legacy request forms and meta, reads, lists, updates
        and deletes it; prints {"created", "read", "listed", "updated"} as the SDK decoded them
"""

import json
import os
import socket
import sys

import mux_python

# urllib3 (under the SDK) waits forever by default; the server is local.
socket.setdefaulttimeout(20)


def client():
    config = mux_python.Configuration(host=os.environ["ONAIR_URL"])
    config.username = os.environ["TOKEN_ID"]
    config.password = os.environ["TOKEN_SECRET"]
    return mux_python.ApiClient(config)


def create(api):
    public = [mux_python.PlaybackPolicy.PUBLIC]
    request = mux_python.CreateLiveStreamRequest(
        playback_policies=public,
        new_asset_settings=mux_python.CreateAssetRequest(playback_policies=public),
        reconnect_window=0,
    )
    stream = mux_python.LiveStreamsApi(api).create_live_stream(request).data
    return {"id": stream.id, "stream_key": stream.stream_key}


def legacy(api):
    """A live stream created with the legacy request forms and meta, read back (get, list),
    updated with the typed models, then deleted; every answer goes through the SDK's strict
    decoding."""
    streams = mux_python.LiveStreamsApi(api)
    body = {
        "playback_policy": "public",
        "new_asset_settings": {"playback_policy": "public"},
        "reconnect_window": 12.5,
        "meta": {"title": "SDK show", "creator_id": "sdk-user", "external_id": "ext-1"},
    }
    created = streams.create_live_stream(body).data
    read = streams.get_live_stream(created.id).data
    listed = [s for s in streams.list_live_streams(limit=100).data if s.id == created.id]
    update = mux_python.UpdateLiveStreamRequest(
        meta=mux_python.LiveStreamMetadata(title="Python show"),
        reconnect_window=0.5,
        latency_mode="low",
    )
    updated = streams.update_live_stream(created.id, update).data
    streams.delete_live_stream(created.id)
    return {
        "created": stream_json(created),
        "read": stream_json(read),
        "listed": [stream_json(s) for s in listed],
        "updated": stream_json(updated),
    }


def stream_json(stream):
    """What the SDK decoded, as JSON (its own serialisation, absent fields left out)."""
    return mux_python.ApiClient().sanitize_for_serialization(stream)


def read(api, live_stream_id):
    stream = mux_python.LiveStreamsApi(api).get_live_stream(live_stream_id).data
    asset_id = stream.recent_asset_ids[-1]
    assets = mux_python.AssetsApi(api)
    asset = assets.get_asset(asset_id).data

    # Every page, by cursor, as long as next_cursor is given.
    paged, cursor, pages = [], None, 0
    while True:
        kwargs = {"limit": 1}
        if cursor:
            kwargs["cursor"] = cursor
        page = assets.list_assets(**kwargs)
        pages += 1
        paged += [a.id for a in page.data]
        cursor = page.next_cursor
        if not cursor or pages > 100:
            break
    by_stream = assets.list_assets(live_stream_id=live_stream_id).data

    info = assets.get_asset_input_info(asset_id).data
    playback_id = asset.playback_ids[0].id
    pid = assets.get_asset_playback_id(asset_id, playback_id).data
    owner = mux_python.PlaybackIDApi(api).get_asset_or_livestream_id(playback_id).data

    return {
        "id": asset.id,
        "created_at": asset.created_at,
        "status": asset.status,
        "is_live": asset.is_live,
        "live_stream_id": asset.live_stream_id,
        "duration": asset.duration,
        "max_stored_resolution": asset.max_stored_resolution,
        "resolution_tier": asset.resolution_tier,
        "max_resolution_tier": asset.max_resolution_tier,
        "max_stored_frame_rate": asset.max_stored_frame_rate,
        "aspect_ratio": asset.aspect_ratio,
        "ingest_type": asset.ingest_type,
        "master_access": asset.master_access,
        "progress": asset.progress.state if asset.progress else None,
        "playback_ids": [{"id": p.id, "policy": p.policy} for p in asset.playback_ids],
        "tracks": [
            {
                "type": t.type,
                "max_width": t.max_width,
                "max_height": t.max_height,
                "max_frame_rate": t.max_frame_rate,
                "max_channels": t.max_channels,
                "max_channel_layout": t.max_channel_layout,
            }
            for t in asset.tracks or []
        ],
        "recording_times": [
            {"type": r.type, "duration": r.duration, "started_at": r.started_at.isoformat()}
            for r in asset.recording_times or []
        ],
        "paged_ids": paged,
        "pages": pages,
        "by_live_stream_ids": [a.id for a in by_stream],
        "input_info": [
            {
                "container_format": i.file.container_format if i.file else None,
                "tracks": [t.type for t in (i.file.tracks or [])] if i.file else [],
            }
            for i in info
        ],
        "playback_id": {"id": pid.id, "policy": pid.policy},
        "owner": {"type": owner.object.type, "id": owner.object.id},
    }


def main():
    api = client()
    if sys.argv[1:2] == ["create"]:
        result = create(api)
    elif sys.argv[1:2] == ["read"] and len(sys.argv) == 3:
        result = read(api, sys.argv[2])
    elif sys.argv[1:2] == ["legacy"]:
        result = legacy(api)
    else:
        sys.exit("usage: asset_check.py create | read LIVE_STREAM_ID | legacy")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
