"""Who is calling and what they may do: authentication, policy, rate limits, replay, audit."""
