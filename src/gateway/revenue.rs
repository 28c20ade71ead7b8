//! `x402_revenue_atomic_total`: settled revenue by route, network and asset, summed exactly in atomic
//! units. A `u64` counter wraps at 2^64 atomic units, about 18.4 whole tokens of an 18-decimal asset; these
//! sums are 256-bit and never wrap. Prometheus reads every sample as a float, so the exposed figure is exact
//! up to 2^53 and rounded (never wrapped, never lowered) beyond; the sum kept here stays exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use alloy::primitives::U256;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

const NAME: &str = "x402_revenue_atomic_total";
const HELP: &str = "Settled revenue in the asset's atomic units (USDC: 1e-6), by route, network and asset";
const LABELS: [&str; 3] = ["route", "network", "asset"];

/// The revenue sums; clones share them.
#[derive(Clone)]
pub struct Revenue {
    desc: Arc<Desc>,
    sums: Arc<Mutex<BTreeMap<[String; 3], U256>>>,
}

impl Revenue {
    pub fn new() -> Result<Self, prometheus::Error> {
        let labels = LABELS.iter().map(|l| (*l).to_owned()).collect();
        Ok(Revenue {
            desc: Arc::new(Desc::new(NAME.into(), HELP.into(), labels, Default::default())?),
            sums: Arc::default(),
        })
    }

    /// Adds `atomic` to a series (creating it; `0` makes it visible from the start).
    pub fn add(&self, route: &str, network: &str, asset: &str, atomic: U256) {
        let mut sums = self.sums.lock().unwrap_or_else(|p| p.into_inner());
        let sum = sums
            .entry([route.to_owned(), network.to_owned(), asset.to_owned()])
            .or_default();
        *sum = sum.saturating_add(atomic);
    }
}

impl Collector for Revenue {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sums = self.sums.lock().unwrap_or_else(|p| p.into_inner());
        let metrics = sums
            .iter()
            .map(|(values, sum)| {
                let mut m = Metric::default();
                m.set_label(
                    LABELS
                        .iter()
                        .zip(values)
                        .map(|(name, value)| {
                            let mut l = LabelPair::default();
                            l.set_name((*name).to_owned());
                            l.set_value(value.clone());
                            l
                        })
                        .collect(),
                );
                let mut c = Counter::default();
                // Exposition only: Prometheus holds samples as floats.
                c.set_value(f64::from(sum));
                m.set_counter(c);
                m
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(NAME.to_owned());
        family.set_help(HELP.to_owned());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revenue_past_two_to_the_sixty_four_atomic_units_keeps_counting() {
        let r = Revenue::new().unwrap();
        let whole_token = U256::from(10u64).pow(U256::from(18));
        for _ in 0..20 {
            r.add("/ai/**", "eip155:8453", "0xabc", whole_token);
        }
        r.add("/free", "eip155:8453", "0xabc", U256::ZERO);
        let registry = prometheus::Registry::new();
        registry.register(Box::new(r.clone())).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let value = |route: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(NAME) && l.contains(&format!("route=\"{route}\"")))
                .unwrap_or_else(|| panic!("no {route} series in:\n{text}"));
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        // 20 tokens = 2e19 atomic units, past u64::MAX (1.8e19): a u64 counter would show 1.55e18.
        assert_eq!(value("/ai/**"), 2e19, "{text}");
        assert_eq!(value("/free"), 0.0);
        assert!(text.contains("# TYPE x402_revenue_atomic_total counter"), "{text}");
    }
}
