"""Channel accounts for sponsored funding (channels.pool.ChannelPool)."""
