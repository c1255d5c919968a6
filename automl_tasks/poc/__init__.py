"""PoC on new data: exploration report, algorithm leaderboard, white-box candidates, segment models."""
