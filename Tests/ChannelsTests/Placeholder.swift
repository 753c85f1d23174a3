import Testing
@Suite struct ChannelsPlaceholderTests { @Test func builds() {} }
