"""Live video (live-video-to-video over trickle). So far: the media layer (``media``); the
session, its route and the frame-processor plugins come next."""
